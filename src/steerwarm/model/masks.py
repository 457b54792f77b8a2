"""Attention masks we build ourselves, in the form transformers' decoder models take them, per layer type.

Invariants:
- A query at position q may attend to a key at position k only where the caller allows it (causality, tree or slot
  layout); a sliding-window layer additionally requires `k > q - window` (`config.sliding_window`), exactly the rule
  transformers applies to the masks it makes itself. Full-attention layers get the caller's mask unchanged.
- Models with per-layer attention types (`config.layer_types`: Gemma 2/3, Qwen2/3 with sliding layers) get a dict from
  layer type to mask, as their forward accepts; others get one mask (sliding for Mistral- or Phi-3-style models whose
  every layer slides). An attention type we do not know is a `ValueError` naming it.
- Masks are 4D `[rows, 1, queries, keys]`: boolean for `sdpa` (unless `additive` is asked for), additive (0 / the
  dtype's minimum) for eager attention.
"""

from __future__ import annotations

from typing import Any

import torch


def layer_masks(config: Any, allowed: torch.Tensor, query_pos: torch.Tensor, key_pos: torch.Tensor,
                dtype: torch.dtype, additive: bool = False) -> torch.Tensor | dict[str, torch.Tensor]:
    """Masks for `allowed` [rows, queries, keys] (bool) with query positions [rows, queries] and key positions
    [rows or 1, keys]; see the module invariants."""
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None)

    def fmt(mask: torch.Tensor) -> torch.Tensor:
        mask = mask[:, None]
        if not additive and getattr(config, "_attn_implementation", "sdpa") == "sdpa":
            return mask
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)

    def sliding() -> torch.Tensor:
        if not window:
            raise ValueError("the model has sliding-window layers but no config.sliding_window")
        return allowed & (key_pos[:, None, :] > query_pos[:, :, None] - int(window))

    if types:
        out: dict[str, torch.Tensor] = {}
        for kind in set(types):
            if kind == "full_attention":
                out[kind] = fmt(allowed)
            elif kind == "sliding_attention":
                out[kind] = fmt(sliding())
            else:
                raise ValueError(f"attention layer type {kind!r} is not supported (steerwarm builds masks for "
                                 "full_attention and sliding_attention layers)")
        return out
    return fmt(sliding() if window else allowed)
