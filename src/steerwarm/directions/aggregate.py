"""Aggregators: directions from activations. A contrast of two text sets (mean difference), and model-diff of aligned
tokens (fine-tune minus base: mean, PCA or probe), each as a `SteeringVector` with its typical norms.

Invariants:
- Typical norms are medians of per-token residual norms over every counted token, never including position 0.
- The contrast direction at layer L is mean(pos) - mean(neg) over texts, where each text contributes the mean of
  its own tokens (long texts do not dominate), then normalised; the raw difference norm is kept in `extra`.
- Model-diff directions are signed to agree with the mean difference (fine-tune minus base).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from steerwarm.directions.activations import TextItem, paired_activations, response_activations
from steerwarm.model.load import LoadedModel
from steerwarm.steer.vector import Provenance, SteeringVector, data_hash


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


def aggregate(base_acts: torch.Tensor, finetune_acts: torch.Tensor, method: str) -> torch.Tensor:
    """One direction (not normalised) from aligned [tokens, hidden] activations.

    mean: mean of fine-tune - base. pca: first right-singular vector of the uncentred differences (centring would erase
    a constant shift, the very thing a fine-tune adds), signed to agree with the mean difference. probe: weights of a
    logistic regression separating fine-tune from base activations (standardised inputs, mapped back), signed likewise.
    """
    diffs = finetune_acts - base_acts
    mean: torch.Tensor = diffs.mean(dim=0)
    if not bool(diffs.any()):
        raise ValueError("fine-tune and base activations are identical at this layer: no direction to extract")
    if method == "mean":
        return mean
    if method == "pca":
        _, _, vh = torch.linalg.svd(diffs.double(), full_matrices=False)
        pc: torch.Tensor = vh[0].float()
        return pc if float(pc @ mean) >= 0 else -pc
    if method == "probe":
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        x = torch.cat([base_acts, finetune_acts]).double().numpy()
        y = np.array([0] * len(base_acts) + [1] * len(finetune_acts))
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
    name: str = "finetune",
    default_layers: Sequence[int] = (),
) -> SteeringVector:
    """Aggregate (layer, base activations, fine-tune activations) triples, one layer at a time, into a vector.

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
        provenance=Provenance(method=f"finetune-diff-{method}", data_hash=items_hash,
                              params={**params, "n_tokens": n_tokens}),
        name=name, layers=default_layers,
    )


def finetune_vector(
    base: LoadedModel,
    finetuned: LoadedModel,
    items: Sequence[TextItem],
    *,
    method: str = "mean",
    name: str = "finetune",
    layers: Sequence[int] | None = None,
    default_layers: Sequence[int] = (),
    batch_size: int = 8,
) -> SteeringVector:
    """Direction per layer from fine-tune-minus-base residuals on the same response tokens (see `aggregate`)."""
    all_layers = list(layers) if layers is not None else list(range(base.num_layers))
    acts = paired_activations(base, finetuned, items, all_layers, batch_size=batch_size)
    return vector_from_pairs(
        ((layer, b, t) for layer, (b, t) in acts.items()), method=method, model_fingerprint=base.fingerprint,
        model_name=base.name, items_hash=data_hash(it.key() for it in items),
        params={"finetune": finetuned.name, "finetune_fingerprint": finetuned.fingerprint, "n_items": len(items)},
        name=name, default_layers=default_layers,
    )
