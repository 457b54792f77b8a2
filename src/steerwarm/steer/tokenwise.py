"""Per-token steering for engines that flatten a batch into one token axis (vLLM): persistent coefficient buffers and
two custom operators that torch.compile and CUDA graphs treat as single opaque nodes.

A serving engine such as vLLM runs each step over `n` scheduled tokens of many requests laid end to end (prefill
chunks and decode tokens alike, plus padding up to a captured graph size). `TokenSteering` gives every steered layer
one coefficient row per token slot; the engine fills the rows of a step before the forward pass, outside any compiled
region, and the layer adds `coefs[:n] @ directions` to its output.

Invariants:
- The buffers are allocated once, at `max_tokens` rows, and only ever written in place (`fill`), so their storage
  never moves: a captured CUDA graph or a compiled graph that read them keeps reading the current step's values.
- `fill` writes the rows of the scheduled tokens and zeroes every row after them, so padding tokens get nothing.
- Coefficient (k) of a token at layer L is `coef_k * norm_k[L]`, computed in float64 and rounded once to float32,
  the same arithmetic as `steerwarm.steer.hooks.Steering`; a row with one non-zero entry therefore adds exactly the
  float32 delta the hooks add, cast to the activation dtype once. A row of zeros adds exactly zero.
- Any mix of coefficients in one step costs the same: one [n, K] x [K, hidden] product per steered layer, where K
  is the number of directions registered at that layer (fixed at install time), whatever the values.
- Traced or captured (torch.compile, CUDA graphs), a layer always runs the operators, since a graph replays for
  every later step. Eager (vLLM's `--enforce-eager`, the CPU build), the same arithmetic runs as plain torch calls
  (no operator dispatch), a layer at which no row of the step has a non-zero coefficient is left untouched (exact:
  such a step adds exactly zero there), and the monitor projects only when `reading` is set (someone collects it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

OP_NAMESPACE = "steerwarm"


def add_steering(hidden: torch.Tensor, coefs: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """`hidden + (coefs[:n] @ directions)` cast to hidden's dtype, where n = hidden's token count (rows)."""
    n = hidden.shape[0]
    delta = coefs[:n] @ directions
    return hidden + delta.to(hidden.dtype)


def project_into(stream: torch.Tensor, direction: torch.Tensor, scale: float, out: torch.Tensor) -> None:
    """`out[:n] = (stream @ direction) * scale` in float32 (the warmth monitor's reading per token)."""
    n = stream.shape[0]
    out[:n].copy_((stream.float() @ direction) * scale)


@torch.library.custom_op(f"{OP_NAMESPACE}::steer_add", mutates_args=())
def steer_add(hidden: torch.Tensor, coefs: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """`add_steering` as one opaque operator (what compiled and captured graphs hold)."""
    return add_steering(hidden, coefs, directions)


@steer_add.register_fake
def _steer_add_fake(hidden: torch.Tensor, coefs: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(hidden)


@torch.library.custom_op(f"{OP_NAMESPACE}::project", mutates_args=("out",))
def project(stream: torch.Tensor, direction: torch.Tensor, scale: float, out: torch.Tensor) -> None:
    """`project_into` as one opaque operator."""
    project_into(stream, direction, scale, out)


@project.register_fake
def _project_fake(stream: torch.Tensor, direction: torch.Tensor, scale: float, out: torch.Tensor) -> None:
    return None


@dataclass(frozen=True)
class LayerDirections:
    """The unit directions registered at one layer, one row per entry of `keys` (vector names)."""

    layer: int
    keys: tuple[str, ...]
    directions: torch.Tensor  # [K, hidden], float32
    norms: tuple[float, ...]  # the vectors' typical norms at this layer, one per key


class TokenSteering:
    """Coefficient buffers for the steered layers of one model replica, and the monitor's per-token readings.

    One flat row per token slot holds every steered layer's coefficients side by side (`columns[layer]` is its
    slice), so a step is one host-to-device copy whatever the number of layers."""

    def __init__(self, layers: Sequence[LayerDirections], *, max_tokens: int, device: torch.device | str,
                 monitor: tuple[int, torch.Tensor, float] | None = None) -> None:
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        self.max_tokens = max_tokens
        self.device = torch.device(device)
        self.layers = {ld.layer: ld for ld in layers}
        self.columns: dict[int, tuple[int, int]] = {}
        width = 0
        for ld in layers:
            self.columns[ld.layer] = (width, width + len(ld.keys))
            width += len(ld.keys)
        self.width = width
        self.directions = {ld.layer: ld.directions.to(self.device, torch.float32) for ld in layers}
        self.buffer = torch.zeros(max_tokens, width, dtype=torch.float32, device=self.device)
        self.coefs = {layer: self.buffer[:, a:b] for layer, (a, b) in self.columns.items()}
        self._host = np.zeros((max_tokens, width), dtype=np.float32)
        self.monitor_layer: int | None = None
        self.monitor_direction: torch.Tensor | None = None
        self.monitor_scale = 0.0
        self.readout = torch.zeros(max_tokens, dtype=torch.float32, device=self.device)
        if monitor is not None:
            layer, direction, norm = monitor
            self.monitor_layer = layer
            self.monitor_direction = direction.to(self.device, torch.float32)
            self.monitor_scale = 1.0 / float(norm)
        self._filled = 0
        # eager fast path: which layers this step's rows steer at all, and whether anyone reads the monitor
        self.live = dict.fromkeys(self.columns, True)
        self.reading = True
        self._starts = np.array([a for a, _ in self.columns.values()], dtype=np.int64)

    def row(self, coefs: dict[int, dict[str, float]]) -> np.ndarray:
        """One request's flat row from raw coefficients by layer and vector name (layers or names not registered
        here raise KeyError: the registry that resolved them must be the one these buffers were built from)."""
        out = np.zeros(self.width, dtype=np.float32)
        for layer, by_name in coefs.items():
            ld = self.layers[layer]
            a, _ = self.columns[layer]
            for name, c in by_name.items():
                k = ld.keys.index(name)
                out[a + k] = np.float32(c * ld.norms[k])  # float64 product, rounded once
        return out

    def fill(self, rows: np.ndarray, counts: Sequence[int] | np.ndarray) -> None:
        """Write one step: request i (row `rows[i]`) covers the next `counts[i]` token slots; every slot after the
        last request's tokens is zeroed."""
        reps = np.asarray(counts, dtype=np.int64)
        total = int(reps.sum())
        if total > self.max_tokens:
            raise ValueError(f"{total} scheduled tokens exceed the {self.max_tokens} steering slots")
        if len(rows) != len(reps):
            raise ValueError(f"{len(rows)} rows for {len(reps)} requests")
        clear = max(self._filled, total)
        if self.width and clear:
            self._host[:total] = np.repeat(np.asarray(rows, dtype=np.float32).reshape(len(reps), self.width),
                                           reps, axis=0)
            self._host[total:clear] = 0.0
            self.buffer[:clear].copy_(torch.from_numpy(self._host[:clear]))
            if len(rows):
                used = np.logical_or.reduceat(np.any(np.asarray(rows) != 0, axis=0), self._starts)
                self.live = dict(zip(self.columns, (bool(u) for u in used), strict=True))
            else:
                self.live = dict.fromkeys(self.columns, False)
        self._filled = total

    def apply(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        """The steered output of `layer` (hidden: [n, hidden] tokens of this step)."""
        if _in_graph(hidden):
            out: torch.Tensor = steer_add(hidden, self.coefs[layer], self.directions[layer])
            return out
        if not self.live[layer]:  # every row of this step adds exactly zero here
            return hidden
        return add_steering(hidden, self.coefs[layer], self.directions[layer])

    def read(self, stream: torch.Tensor) -> None:
        """Record the monitor's projection of each token's residual stream (call at the monitor layer)."""
        if self.monitor_direction is None:
            return
        if _in_graph(stream):
            project(stream, self.monitor_direction, self.monitor_scale, self.readout)
        elif self.reading:
            project_into(stream, self.monitor_direction, self.monitor_scale, self.readout)


def _in_graph(t: torch.Tensor) -> bool:
    """Whether this call is being traced (torch.compile) or captured (a CUDA graph): then the work must be the
    opaque operator, unconditionally, since a graph replays for every later step whatever its values."""
    return bool(torch.compiler.is_compiling() or (t.is_cuda and torch.cuda.is_current_stream_capturing()))
