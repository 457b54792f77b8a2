"""Log-probabilities of continuation tokens given a prefix: the one primitive behind SocioT, perplexity and
likelihood scoring.

Invariants:
- Prefix and continuation are tokenized separately and concatenated, so the continuation's tokens are exactly
  `tokenizer(continuation)` whatever the prefix ends with; only continuation tokens are scored.
- Batches are right-padded with an attention mask; padding never changes a row's result (up to float rounding).
- Only positions that predict continuation tokens are unembedded; the result equals slicing full logits.
- Steering, when wanted, is the caller's context (`with steer(...)`): this module adds no hooks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from steerwarm.model.anatomy import backbone
from steerwarm.model.device import input_device
from steerwarm.model.load import LoadedModel


def continuation_logprobs(
    loaded: LoadedModel,
    prefixes: Sequence[str],
    continuations: Sequence[str],
    *,
    batch_size: int = 8,
    max_tokens: int = 1024,
) -> list[torch.Tensor]:
    """Per-token log-probabilities (float32, 1-D) of each continuation after its prefix."""
    if len(prefixes) != len(continuations):
        raise ValueError("need one prefix per continuation")
    tok, model = loaded.tokenizer, loaded.model
    dev = input_device(model)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    pairs: list[tuple[list[int], int]] = []
    for p, c in zip(prefixes, continuations, strict=True):
        pre = list(tok(p, add_special_tokens=False)["input_ids"]) if p else []
        cont = list(tok(c, add_special_tokens=False)["input_ids"])
        if not cont:
            raise ValueError(f"continuation {c!r} has no tokens")
        if not pre:
            bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
            pre = [int(bos)]
        ids = (pre + cont)[-max_tokens:]
        pairs.append((ids, min(len(cont), len(ids) - 1)))
    out: list[torch.Tensor] = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, (ids, _) in enumerate(chunk):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            mask[i, : len(ids)] = 1
        # Only the positions that predict a continuation token go through the unembedding (49k wide here).
        rows = torch.cat([torch.full((n_cont,), i) for i, (_, n_cont) in enumerate(chunk)])
        cols = torch.cat([torch.arange(len(ids) - n_cont - 1, len(ids) - 1) for ids, n_cont in chunk])
        targets = input_ids[rows, cols + 1][:, None]
        with torch.inference_mode():
            hidden = backbone(model)(input_ids=input_ids.to(dev), attention_mask=mask.to(dev),
                                     use_cache=False).last_hidden_state
            head: Any = model.get_output_embeddings()  # type: ignore[no-untyped-call]
            logits = head(hidden[rows.to(hidden.device), cols.to(hidden.device)]).float()
        logp = torch.log_softmax(logits, dim=-1).gather(-1, targets.to(logits.device))[:, 0].cpu()
        out.extend(t.clone() for t in torch.split(logp, [n_cont for _, n_cont in chunk]))
    return out


def mean_logprob(loaded: LoadedModel, prefixes: Sequence[str], continuations: Sequence[str],
                 batch_size: int = 8) -> list[float]:
    """Mean per-token log-probability of each continuation given its prefix."""
    return [float(t.mean()) for t in continuation_logprobs(loaded, prefixes, continuations, batch_size=batch_size)]
