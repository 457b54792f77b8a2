"""Activations over response tokens: residuals recorded at every decoder layer, per text, for one model or for a base
model and its fine-tune on the same tokens.

Invariants:
- Only response tokens count: a text given with a prompt is chat-templated and the prompt's tokens (and padding)
  are excluded; a bare text is read raw and its position 0 is excluded (it carries an outlier norm).
- Model-diff pairs are aligned token by token: base and fine-tune must share a tokenizer, else it is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from steerwarm.model.chat import chat_text
from steerwarm.model.device import input_device
from steerwarm.model.load import LoadedModel
from steerwarm.steer.hooks import record_residuals


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
                dev = input_device(model)
                # explicit positions: left padding must not shift them (models with absolute position embeddings)
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                model(input_ids=input_ids.to(dev), attention_mask=mask.to(dev), position_ids=positions.to(dev),
                      use_cache=False)
            for i, (ids, first) in enumerate(chunk):
                lo = width - len(ids) + first
                if lo >= width:
                    raise ValueError(f"item {start + i} has no response tokens to read")
                yield {layer: rec[layer][0][i, lo:] for layer in layers}
            bar.update(len(chunk))


def check_same_tokenizer(base: LoadedModel, finetuned: LoadedModel) -> None:
    if base.tokenizer.get_vocab() != finetuned.tokenizer.get_vocab():
        raise ValueError("the base model and the fine-tune must share a tokenizer: model-diff needs the same tokens")


def paired_activations(
    base: LoadedModel, finetuned: LoadedModel, items: Sequence[TextItem], layers: Sequence[int], *,
    batch_size: int = 8
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """{layer: (base activations, fine-tune activations)} over the same response tokens, rows aligned token by
    token."""
    check_same_tokenizer(base, finetuned)
    b_rows: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    t_rows: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    pairs = zip(response_activations(base, items, layers, batch_size=batch_size, desc="base"),
                response_activations(finetuned, items, layers, batch_size=batch_size, desc="fine-tune"), strict=True)
    for b, t in pairs:
        for layer in layers:
            b_rows[layer].append(b[layer])
            t_rows[layer].append(t[layer])
    return {layer: (torch.cat(b_rows[layer]), torch.cat(t_rows[layer])) for layer in layers}
