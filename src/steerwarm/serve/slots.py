"""KV slots: preallocated key/value storage in which every running sequence owns one row and keeps the key and value
of its token at position p in column p.

Invariants:
- Storage per decoder layer: keys and values `[rows, kv_heads, cols, head_dim]` in the model's dtype on that layer's
  device (a model spread over several GPUs keeps each layer's slots beside it),
  allocated at the first write from the shapes the model's own attention hands over (so any head layout fits).
  `rows` is fixed (the engine's batch size); `cols` grows by doubling when a position reaches it.
- Column = position. A sequence never moves while others join or leave, and it needs no padding. So the attention
  mask of a query at position p is `column <= p` (and `column > p - window` on sliding-window layers): a function of
  positions alone (`attention_masks`). Columns above p hold stale keys from an earlier occupant of the row or from
  padding; they are never attended, and are overwritten when the row reaches them.
- A forward call is bound (`bind`) to a contiguous range of rows `[start, start + n)` and one position per input
  token; `update`, which the model's attention layers call, writes the call's keys/values there and returns views
  `[start:start + n, :, :width]`, never copies.
- Only three things copy keys: `move` (one row onto another: the engine compacts its batch when a row finishes, and
  gives each extra choice of a prompt its own row), and `reserve` when the columns must grow, which copies every
  row once and says so (its return value; the engine counts it).
- It is duck-typed to what transformers' attention layers call (`update(keys, values, layer_idx, kwargs)`); the
  engine always passes positions and a prepared mask, so the model never asks it for a sequence length.
"""

from __future__ import annotations

from typing import Any

import torch

from steerwarm.model.masks import layer_masks

MIN_COLS = 256


class SlotCache:
    """Preallocated per-row KV storage for the serving engine; see the module invariants."""

    def __init__(self, rows: int, *, dtype: torch.dtype, device: torch.device, cols: int = MIN_COLS) -> None:
        if rows < 1 or cols < 1:
            raise ValueError("a slot cache needs at least one row and one column")
        self.rows = rows
        self.cols = cols
        self.dtype = dtype
        self.device = device
        self.keys: list[torch.Tensor | None] = []
        self.values: list[torch.Tensor | None] = []
        self._start = 0
        self._n = 0
        self._rows_index: torch.Tensor | None = None
        self._positions: torch.Tensor | None = None
        self._moved: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}  # the indices on other devices
        self._width = 0

    # -- what the engine calls ------------------------------------------------------------------------------------
    def reserve(self, cols: int) -> bool:
        """Make room for positions < `cols`, doubling the columns (one copy of every row) when needed; True if it
        grew."""
        if cols <= self.cols:
            return False
        new = self.cols
        while new < cols:
            new *= 2
        for store in (self.keys, self.values):
            for i, old in enumerate(store):
                if old is None:
                    continue
                grown = old.new_zeros((old.shape[0], old.shape[1], new, old.shape[3]))
                grown[:, :, :self.cols] = old
                store[i] = grown
        self.cols = new
        return True

    def bind(self, start: int, positions: torch.Tensor, width: int) -> None:
        """Point the next forward call at rows [start, start + n) with `positions` [n, q] (one per input token);
        `width` = the largest position + 1 (the caller knows it without a pass over the tensor)."""
        n = positions.shape[0]
        if start < 0 or start + n > self.rows:
            raise ValueError(f"rows [{start}, {start + n}) outside the {self.rows} slots")
        if width > self.cols:
            raise ValueError(f"position {width - 1} beyond the reserved {self.cols} columns; call reserve first")
        self._start, self._n, self._width = start, n, width
        self._rows_index = torch.arange(start, start + n, device=self.device)[:, None]
        self._positions = positions.to(self.device)
        self._moved = {}

    def move(self, src: int, dst: int, length: int) -> None:
        """Copy the first `length` columns of row `src` onto row `dst` in every layer."""
        if src == dst or length <= 0:
            return
        for store in (self.keys, self.values):
            for t in store:
                if t is not None:
                    t[dst, :, :length] = t[src, :, :length]

    def row_storage(self, row: int) -> list[int]:
        """Data addresses of one row's keys in every layer (tests use them to prove that a row never moved)."""
        return [int(t[row].data_ptr()) for t in self.keys if t is not None]

    @property
    def nbytes(self) -> int:
        return sum(int(t.numel() * t.element_size()) for t in [*self.keys, *self.values] if t is not None)

    # -- what the model's attention layers call -------------------------------------------------------------------
    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               cache_kwargs: dict[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self._positions is None or self._rows_index is None:
            raise RuntimeError("SlotCache.update called before bind")
        while len(self.keys) <= layer_idx:
            self.keys.append(None)
            self.values.append(None)
        rows, positions = self._rows_index, self._positions
        if key_states.device != rows.device:  # a layer on another device of a model spread over several
            if key_states.device not in self._moved:
                self._moved[key_states.device] = (rows.to(key_states.device), positions.to(key_states.device))
            rows, positions = self._moved[key_states.device]
        out = []
        for store, new in ((self.keys, key_states), (self.values, value_states)):
            t = store[layer_idx]
            if t is None:
                shape = (self.rows, new.shape[1], self.cols, new.shape[3])
                t = torch.zeros(shape, dtype=self.dtype, device=new.device)
                store[layer_idx] = t
            # new: [n, kv_heads, q, head_dim]; row r's token j goes to column positions[r, j]
            t[rows, :, positions] = new.transpose(1, 2).to(t.dtype)
            out.append(t[self._start:self._start + self._n, :, :self._width])
        return out[0], out[1]


def attention_masks(config: Any, positions: torch.Tensor, width: int, dtype: torch.dtype) -> Any:
    """The attention mask(s) for queries at `positions` [n, q] over columns [0, width) of a `SlotCache`: a column is
    a position, so a query at p sees columns <= p (inside the window on sliding layers; see `model.masks`)."""
    cols = torch.arange(width, device=positions.device)[None, :]
    return layer_masks(config, cols[:, None, :] <= positions[:, :, None], positions, cols, dtype)


def check_layer_types(config: Any) -> None:
    """Raise a clear error at start-up for a model whose attention the slot cache cannot mask."""
    attention_masks(config, torch.zeros((1, 1), dtype=torch.long), 1, torch.float32)
