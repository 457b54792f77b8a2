"""Forking a forward pass into steering streams: the layers below a stream's first steered layer run once for every
stream that does not steer them yet, and each stream gets its own stacked copy of the batch from there on.

Steering adds its delta at the OUTPUT of a decoder layer (`steer.hooks`), so until the output of the first layer
a stream steers (its fork layer F), the stream computes what the unsteered model computes. A `ForkPlan` for S
streams keeps one shared copy of the batch (the carrier) until the lowest fork layer; at the output of each fork
layer L the carrier's rows are replaced by one copy per stream that forks at L, plus the carrier itself while
streams that fork later (or never steer) remain; at the last fork layer the carrier becomes those remaining
streams' copies. With the shipped dial (warm at layer 15, cold at 18, 13 dial values) layers 0-15 run once,
16-18 run for the 6 warm values and the carrier, 19-29 for all 13.

Invariants:
- Rows are stacked in blocks of the R rows a forward call starts with; the carrier is always the last block, so a
  fork replaces the last block by copies and leaves the others alone; after the last fork layer stream s holds
  block `position[s]` (rows `position[s] * R + r`).
- Every tensor argument of a layer above the lowest fork layer whose first dimension is R (attention masks,
  rotary cos/sin, position ids) is repeated to the layer's number of blocks (block-major, once per forward call
  and size, shared by the layers); the layer's hidden-state input (already stacked) and one-dimensional tensors
  (cache positions) are left alone. A key/value cache passed in must hold, for each layer, that layer's blocks of
  R rows: the plan applied to a batch-1 prefix pass builds exactly such a cache, and
  `DynamicCache.batch_repeat_interleave(R)` keeps the layout.
- Each stream's steering applies to its own rows exactly as in a pass of its own (one `Steering` per segment
  between fork layers, specs restricted to the segment's layers, per-row coefficients of the segment's blocks; the
  carrier's coefficients are zero throughout its segments by construction). Hooks are removed when the context
  exits, by exception or not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from steerwarm.model.anatomy import decoder_layers, hidden_of, replace_hidden
from steerwarm.steer.hooks import SteerSpec, steer

RowSpecs = Callable[[Sequence[int]], list[SteerSpec]]  # steering specs for rows, given each row's stream


def first_steered_layer(specs: Sequence[SteerSpec]) -> int | None:
    """The lowest layer any spec adds a non-zero delta at (None: nothing is steered)."""
    layers = [layer for spec in specs if bool(torch.as_tensor(spec.coefs).ne(0).any()) for layer in spec.layer_list()]
    return min(layers) if layers else None


@dataclass(frozen=True)
class ForkPlan:
    """Where S streams fork (see the module doc). `forks[i]` = (layer, streams that fork there); `segments[i]` =
    the stream of each block from that layer's output up to the next fork layer (the carrier as one of the streams
    still waiting, whose steering is zero there); `position[s]` = stream s's block after the last fork."""

    forks: list[tuple[int, list[int]]]
    segments: list[list[int]]
    position: list[int]

    @classmethod
    def build(cls, row_specs: RowSpecs, n_streams: int) -> ForkPlan | None:
        """The plan for `n_streams` streams steered by `row_specs` (None when no stream steers anything)."""
        firsts = [first_steered_layer(row_specs([s])) for s in range(n_streams)]
        layers = sorted({f for f in firsts if f is not None})
        if not layers:
            return None
        never = [s for s, f in enumerate(firsts) if f is None]
        forks, segments, blocks = [], [], []
        for i, layer in enumerate(layers):
            forked = [s for s, f in enumerate(firsts) if f == layer]
            waiting = [s for s, f in enumerate(firsts) if f is not None and f > layer] + never
            forks.append((layer, forked))
            blocks += forked
            last = i == len(layers) - 1
            segments.append(blocks + (never if last else waiting[:1]))
        order = segments[-1]
        return cls(forks, segments, [order.index(s) for s in range(n_streams)])

    @contextmanager
    def apply(self, model: nn.Module, row_specs: RowSpecs, rows: int) -> Iterator[None]:
        """Fork every forward call of `rows` rows within the context and steer each stream's copy (see the module
        doc)."""
        blocks = decoder_layers(model)
        for layer, _ in self.forks:
            if not 0 <= layer < len(blocks):
                raise ValueError(f"fork layer {layer} out of range for a {len(blocks)}-layer model")
        lowest = self.forks[0][0]
        state: dict[str, Any] = {"rows": rows, "done": {}}
        grown = {layer: len(seg) - (len(self.segments[i - 1]) - 1 if i else 0)
                 for i, ((layer, _), seg) in enumerate(zip(self.forks, self.segments, strict=True))}
        n_blocks = {}  # blocks entering each layer above the lowest fork
        for j in range(lowest + 1, len(blocks)):
            n_blocks[j] = len(next(seg for (layer, _), seg in zip(self.forks[::-1], self.segments[::-1],
                                                                    strict=True) if layer < j))

        def fork(layer: int) -> Callable[..., Any]:
            def hook(_module: nn.Module, _args: tuple[Any, ...], output: Any) -> Any:
                hidden = hidden_of(output)
                if layer == lowest:  # a new forward call: forget the last call's copies
                    if hidden.shape[0] != rows:
                        raise ValueError(f"the fork plan was applied for {rows} rows, the forward call has "
                                         f"{hidden.shape[0]}")
                    state["done"] = {}
                carrier = hidden[hidden.shape[0] - rows:]
                copies = carrier.repeat(grown[layer], *([1] * (hidden.dim() - 1)))
                return replace_hidden(output, torch.cat([hidden[: hidden.shape[0] - rows], copies]))

            return hook

        def expand(value: Any, n: int) -> Any:
            if isinstance(value, torch.Tensor):
                if value.dim() < 2 or value.shape[0] != state["rows"]:
                    return value
                done: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = state["done"]
                hit = done.get((id(value), n))
                if hit is None or hit[0] is not value:
                    hit = done[(id(value), n)] = (value, value.repeat(n, *([1] * (value.dim() - 1))))
                return hit[1]
            if isinstance(value, tuple):
                return tuple(expand(v, n) for v in value)
            if isinstance(value, list):
                return [expand(v, n) for v in value]
            if isinstance(value, dict):
                return {k: expand(v, n) for k, v in value.items()}
            return value

        def widen(j: int) -> Callable[..., Any]:
            def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
                n = n_blocks[j]  # args[0] is the hidden state, already stacked by the layer below
                return ((args[0], *expand(args[1:], n)) if args else args), expand(kwargs, n)

            return hook

        with ExitStack() as stack:
            for layer, _ in self.forks:
                stack.callback(blocks[layer].register_forward_hook(fork(layer), prepend=True).remove)
            for j in n_blocks:
                stack.callback(blocks[j].register_forward_pre_hook(widen(j), with_kwargs=True).remove)
            ends = [layer for layer, _ in self.forks[1:]] + [len(blocks)]
            for (start, _), end, seg in zip(self.forks, ends, self.segments, strict=True):
                specs = [SteerSpec(sp.vector, sp.coefs, [la for la in sp.layer_list() if start <= la < end])
                         for sp in row_specs([s for s in seg for _ in range(rows)])]
                stack.enter_context(steer(model, specs))
            yield
