"""Activations over response tokens, and aggregators that turn them into steering vectors.

Invariants:
- Only response tokens count: a text given with a prompt is chat-templated and the prompt's tokens (and padding)
  are excluded; a bare text is read raw and its position 0 is excluded (it carries an outlier norm).
- Typical norms are medians of per-token residual norms over every counted token, never including position 0.
- The contrast direction at layer L is mean(pos) - mean(neg) over texts, where each text contributes the mean of
  its own tokens (long texts do not dominate), then normalised; the raw difference norm is kept in `extra`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from steerwarm.generation import chat_text
from steerwarm.models import LoadedModel
from steerwarm.steering import record_residuals
from steerwarm.vectors import Provenance, SteeringVector, data_hash


@dataclass(frozen=True)
class TextItem:
    """A response text, optionally with the user prompt it answers (and a system prompt before that)."""

    text: str
    prompt: str | None = None
    system: str | None = None

    def key(self) -> str:
        """The text that identifies this item in a data hash."""
        head = f"{self.system}\x03" if self.system is not None else ""
        return f"{head}{self.prompt or ''}\x01{self.text}"


def read_texts(path: str | Path) -> list[TextItem]:
    """Read texts: `.jsonl` lines with `text` (and optional `prompt`), or `.txt` with one text per non-empty line
    (a literal backslash-n inside a line stands for a newline)."""
    path = Path(path)
    items: list[TextItem] = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                try:
                    row = json.loads(line)
                    items.append(TextItem(text=str(row["text"]), prompt=row.get("prompt")))
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise ValueError(f"{path}:{n}: expected a JSON object with a 'text' field ({exc})") from exc
            else:
                items.append(TextItem(text=line.rstrip("\n").replace("\\n", "\n")))
    if not items:
        raise ValueError(f"{path} holds no texts")
    return items


def _encode(loaded: LoadedModel, item: TextItem) -> tuple[list[int], int]:
    """Token ids of the item and the index of its first counted (response) token."""
    tok = loaded.tokenizer
    if item.prompt is None:
        if item.system is not None:
            raise ValueError("an item with a system prompt needs a user prompt too")
        ids = tok(item.text, add_special_tokens=False)["input_ids"]
        return list(ids), 1
    messages = [{"role": "system", "content": item.system}] if item.system is not None else []
    messages.append({"role": "user", "content": item.prompt})
    prefix = chat_text(loaded, messages, add_generation_prompt=True)
    pre_ids = tok(prefix, add_special_tokens=False)["input_ids"]
    ids = tok(prefix + item.text, add_special_tokens=False)["input_ids"]
    return list(ids), max(1, len(pre_ids))


def response_activations(
    loaded: LoadedModel,
    items: Sequence[TextItem],
    layers: Sequence[int],
    *,
    batch_size: int = 8,
    max_tokens: int = 512,
    desc: str = "activations",
) -> Iterator[dict[int, torch.Tensor]]:
    """Yield, per item, {layer: [n_response_tokens, hidden]} float32 activations (resid_post)."""
    tok, model = loaded.tokenizer, loaded.model
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    encoded = [_encode(loaded, it) for it in items]
    with tqdm(total=len(items), desc=desc, leave=False) as bar:
        for start in range(0, len(encoded), batch_size):
            chunk = [(ids[:max_tokens], first) for ids, first in encoded[start:start + batch_size]]
            width = max(len(ids) for ids, _ in chunk)
            input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, (ids, _) in enumerate(chunk):
                input_ids[i, width - len(ids):] = torch.tensor(ids)
                mask[i, width - len(ids):] = 1
            with torch.inference_mode(), record_residuals(model, layers) as rec:
                model(input_ids=input_ids, attention_mask=mask, use_cache=False)
            for i, (ids, first) in enumerate(chunk):
                lo = width - len(ids) + first
                if lo >= width:
                    raise ValueError(f"item {start + i} has no response tokens to read")
                yield {layer: rec[layer][0][i, lo:] for layer in layers}
            bar.update(len(chunk))


@dataclass
class LayerStats:
    """Per-layer running sums of per-item mean activations, and every token norm (for medians)."""

    sums: dict[int, torch.Tensor]
    count: int
    token_norms: dict[int, list[torch.Tensor]]

    @classmethod
    def collect(cls, acts: Iterator[dict[int, torch.Tensor]], layers: Sequence[int]) -> LayerStats:
        sums: dict[int, torch.Tensor] = {}
        norms: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
        count = 0
        for item in acts:
            count += 1
            for layer, a in item.items():
                m = a.mean(dim=0)
                sums[layer] = sums[layer] + m if layer in sums else m.clone()
                norms[layer].append(a.norm(dim=-1))
        return cls(sums, count, norms)

    def mean(self, layer: int) -> torch.Tensor:
        return self.sums[layer] / self.count


def median_norms(*stats: LayerStats) -> dict[int, float]:
    layers = stats[0].token_norms.keys()
    return {layer: float(torch.cat([n for s in stats for n in s.token_norms[layer]]).median()) for layer in layers}


def contrast_vector(
    loaded: LoadedModel,
    pos: Sequence[TextItem],
    neg: Sequence[TextItem],
    *,
    name: str = "contrast",
    layers: Sequence[int] | None = None,
    default_layers: Sequence[int] = (),
    batch_size: int = 8,
    method: str = "contrast-mean-diff",
    params: dict[str, Any] | None = None,
) -> SteeringVector:
    """Mean-difference vector of the base model's activations on `pos` versus `neg` texts, at every layer.

    `method` and `params` name the source in the provenance (e.g. a system-prompt contrast)."""
    all_layers = list(layers) if layers is not None else list(range(loaded.num_layers))
    ps = LayerStats.collect(response_activations(loaded, pos, all_layers, batch_size=batch_size, desc="pos"),
                            all_layers)
    ns = LayerStats.collect(response_activations(loaded, neg, all_layers, batch_size=batch_size, desc="neg"),
                            all_layers)
    diffs = {layer: ps.mean(layer) - ns.mean(layer) for layer in all_layers}
    texts = [it.key() for it in pos] + ["\x02"] + [it.key() for it in neg]
    return SteeringVector.from_differences(
        diffs,
        median_norms(ps, ns),
        model_fingerprint=loaded.fingerprint,
        model_name=loaded.name,
        provenance=Provenance(method=method, data_hash=data_hash(texts),
                              params={"n_pos": len(pos), "n_neg": len(neg), **(params or {})}),
        name=name,
        layers=default_layers,
    )


# -- model-diff extraction (fine-tuned versus base, same tokens) -------------------------------------------------------
AGGREGATORS = ("mean", "pca", "probe")


def check_same_tokenizer(base: LoadedModel, tuned: LoadedModel) -> None:
    if base.tokenizer.get_vocab() != tuned.tokenizer.get_vocab():
        raise ValueError("base and tuned models must share a tokenizer: model-diff needs the same tokens")


def paired_activations(
    base: LoadedModel, tuned: LoadedModel, items: Sequence[TextItem], layers: Sequence[int], *, batch_size: int = 8
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """{layer: (base activations, tuned activations)} over the same response tokens, rows aligned token by token."""
    check_same_tokenizer(base, tuned)
    b_rows: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    t_rows: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    pairs = zip(response_activations(base, items, layers, batch_size=batch_size, desc="base"),
                response_activations(tuned, items, layers, batch_size=batch_size, desc="tuned"), strict=True)
    for b, t in pairs:
        for layer in layers:
            b_rows[layer].append(b[layer])
            t_rows[layer].append(t[layer])
    return {layer: (torch.cat(b_rows[layer]), torch.cat(t_rows[layer])) for layer in layers}


def aggregate(base_acts: torch.Tensor, tuned_acts: torch.Tensor, method: str) -> torch.Tensor:
    """One direction (not normalised) from aligned [tokens, hidden] activations.

    mean: mean of tuned - base. pca: first right-singular vector of the uncentred differences (centring would erase
    a constant shift, the very thing a fine-tune adds), signed to agree with the mean difference. probe: weights of a
    logistic regression separating tuned from base activations (standardised inputs, mapped back), signed likewise.
    """
    diffs = tuned_acts - base_acts
    mean: torch.Tensor = diffs.mean(dim=0)
    if not bool(diffs.any()):
        raise ValueError("tuned and base activations are identical at this layer: no direction to extract")
    if method == "mean":
        return mean
    if method == "pca":
        _, _, vh = torch.linalg.svd(diffs.double(), full_matrices=False)
        pc: torch.Tensor = vh[0].float()
        return pc if float(pc @ mean) >= 0 else -pc
    if method == "probe":
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        x = torch.cat([base_acts, tuned_acts]).double().numpy()
        y = np.array([0] * len(base_acts) + [1] * len(tuned_acts))
        mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
        clf = LogisticRegression(C=1.0, max_iter=2000).fit((x - mu) / sd, y)
        w = torch.from_numpy(clf.coef_[0] / sd).float()
        return w if float(w @ mean) >= 0 else -w
    raise ValueError(f"unknown aggregator {method!r}; choose one of {AGGREGATORS}")


def vector_from_pairs(
    pairs: Iterable[tuple[int, torch.Tensor, torch.Tensor]],
    *,
    method: str,
    model_fingerprint: str,
    model_name: str,
    items_hash: str,
    params: dict[str, Any],
    name: str = "sft",
    default_layers: Sequence[int] = (),
) -> SteeringVector:
    """Aggregate (layer, base activations, tuned activations) triples, one layer at a time, into a vector.

    Typical norms are the median token norm of the base activations (response tokens only, so never position 0)."""
    diffs: dict[int, torch.Tensor] = {}
    norms: dict[int, float] = {}
    n_tokens = 0
    for layer, b, t in pairs:
        try:
            diffs[layer] = aggregate(b, t, method)
        except ValueError as exc:
            raise ValueError(f"layer {layer}: {exc}") from exc
        norms[layer] = float(b.norm(dim=-1).median())
        n_tokens = int(b.shape[0])
    return SteeringVector.from_differences(
        diffs, norms, model_fingerprint=model_fingerprint, model_name=model_name,
        provenance=Provenance(method=f"sft-diff-{method}", data_hash=items_hash,
                              params={**params, "n_tokens": n_tokens}),
        name=name, layers=default_layers,
    )


def sft_vector(
    base: LoadedModel,
    tuned: LoadedModel,
    items: Sequence[TextItem],
    *,
    method: str = "mean",
    name: str = "sft",
    layers: Sequence[int] | None = None,
    default_layers: Sequence[int] = (),
    batch_size: int = 8,
) -> SteeringVector:
    """Direction per layer from tuned-minus-base residuals on the same response tokens (see `aggregate`)."""
    all_layers = list(layers) if layers is not None else list(range(base.num_layers))
    acts = paired_activations(base, tuned, items, all_layers, batch_size=batch_size)
    return vector_from_pairs(
        ((layer, b, t) for layer, (b, t) in acts.items()), method=method, model_fingerprint=base.fingerprint,
        model_name=base.name, items_hash=data_hash(it.key() for it in items),
        params={"tuned": tuned.name, "tuned_fingerprint": tuned.fingerprint, "n_items": len(items)},
        name=name, default_layers=default_layers,
    )
