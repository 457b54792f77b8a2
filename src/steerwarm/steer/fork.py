"""Forking a forward pass into steering streams: run the layers below the first steered layer once, and every layer
from there on once per stream, stacked as extra batch rows.

Steering adds its delta at the OUTPUT of a decoder layer (`steer.hooks`), so when no stream steers a layer below
L, decoder layers 0..L compute the same hidden states for every stream. Inside `fork_rows(model, L, S)` a forward
call with R rows runs layers 0..L on those R rows; at the output of layer L each row becomes S rows, stream-major
(row `s * R + r` is stream s's copy of row r), before any steering hook of layer L runs, so the streams' per-row
steering coefficients (S * R of them) apply from layer L on exactly as they would in S separate passes.

Invariants:
- Stream s's rows see exactly the arguments the layers above L would get in a separate pass of the R rows: every
  tensor argument of a layer above L whose first dimension is R (attention masks, rotary cos/sin, position ids) is
  repeated the same stream-major way (once per forward call, shared by the layers); the layer's hidden-state input
  (already S * R rows) and tensors of one dimension (cache positions) are left alone. A key/value cache passed in
  must hold S * R rows for the layers above L (stream-major) and R rows below: `fork_rows` on a batch-1 prefix pass
  builds exactly such a cache, and `DynamicCache.batch_repeat_interleave(R)` keeps the layout.
- The hooks are removed when the context exits, by exception or not; S == 1 installs nothing.
- Nothing here knows about steering: the caller steers the S * R rows with per-row coefficients (`steer.hooks`),
  which must be zero below L (`first_steered_layer`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from steerwarm.model.anatomy import decoder_layers, hidden_of, replace_hidden
from steerwarm.steer.hooks import SteerSpec


def first_steered_layer(specs: Sequence[SteerSpec]) -> int | None:
    """The lowest layer any spec adds a non-zero delta at (None: nothing is steered)."""
    layers = [layer for spec in specs if bool(torch.as_tensor(spec.coefs).ne(0).any()) for layer in spec.layer_list()]
    return min(layers) if layers else None


@contextmanager
def fork_rows(model: nn.Module, layer: int, streams: int) -> Iterator[None]:
    """Within the context, every forward call forks its rows into `streams` stacked copies at the output of decoder
    layer `layer` (see the module doc)."""
    if streams == 1:
        yield
        return
    blocks = decoder_layers(model)
    if not 0 <= layer < len(blocks):
        raise ValueError(f"fork layer {layer} out of range for a {len(blocks)}-layer model")
    state: dict[str, Any] = {"rows": None, "done": {}}

    def fork(_module: nn.Module, _args: tuple[Any, ...], output: Any) -> Any:
        hidden = hidden_of(output)
        state["rows"], state["done"] = hidden.shape[0], {}  # a new forward call: forget the last call's copies
        return replace_hidden(output, hidden.repeat(streams, *([1] * (hidden.dim() - 1))))

    def expand(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            if value.dim() < 2 or value.shape[0] != state["rows"]:
                return value
            done: dict[int, tuple[torch.Tensor, torch.Tensor]] = state["done"]
            hit = done.get(id(value))
            if hit is None or hit[0] is not value:
                hit = done[id(value)] = (value, value.repeat(streams, *([1] * (value.dim() - 1))))
            return hit[1]
        if isinstance(value, tuple):
            return tuple(expand(v) for v in value)
        if isinstance(value, list):
            return [expand(v) for v in value]
        if isinstance(value, dict):
            return {k: expand(v) for k, v in value.items()}
        return value

    def widen(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        # args[0] is the hidden state, already forked by the layer below
        return (args[0], *expand(args[1:])) if args else args, expand(kwargs)

    handles = [blocks[layer].register_forward_hook(fork, prepend=True)]
    try:
        for block in blocks[layer + 1:]:
            handles.append(block.register_forward_pre_hook(widen, with_kwargs=True))
        yield
    finally:
        for h in handles:
            h.remove()
