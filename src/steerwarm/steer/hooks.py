"""Applying steering vectors: forward hooks that add per-row scaled directions to the residual stream.

Invariants:
- Within a `Steering` context, the output of decoder layer L for batch row b at a non-padding position is
  `h + sum_s coef_s[b] * norm_s[L] * dir_s[L]` over the specs that steer L; nothing else changes. Positions whose
  attention-mask entry is 0 (left padding) are never steered; every forward call is steered, prefill and each
  cached decode step alike, because the mask is read afresh from each call's own arguments.
- A layer whose coefficients are all zero is not touched at all, so coefficient 0 is bit-identical to no hook.
- Hooks are removed when the context exits, by exception or not; `active_hooks(model)` lets tests prove it.
- Deltas are computed once per coefficient change (not per step) in float32 and cast to the activation dtype once,
  so fp32 and bf16 models pay one broadcast add per steered layer per step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from steerwarm.model.anatomy import backbone, decoder_layers, hidden_of, replace_hidden
from steerwarm.model.load import fingerprint
from steerwarm.steer.vector import SteeringVector

Coefs = float | Sequence[float] | torch.Tensor


@dataclass(frozen=True)
class SteerSpec:
    """One vector to apply: raw coefficient(s) (a scalar, or one per batch row) at its layers (default: its own)."""

    vector: SteeringVector
    coefs: Coefs
    layers: Sequence[int] | None = None

    def layer_list(self) -> list[int]:
        return list(self.layers) if self.layers is not None else list(self.vector.layers)


def _row_coefs(coefs: Coefs) -> torch.Tensor:
    t = torch.as_tensor(coefs, dtype=torch.float32).reshape(-1)
    if not torch.isfinite(t).all():
        raise ValueError(f"steering coefficients must be finite, got {t.tolist()}")
    return t


class Steering:
    """Context manager that steers `model` with `specs`; see the module invariants."""

    def __init__(self, model: nn.Module, specs: Sequence[SteerSpec], *, check_fingerprint: bool = True) -> None:
        self.model = model
        self.layers = decoder_layers(model)
        n_layers = len(self.layers)
        hidden = int(getattr(getattr(model, "config", None), "hidden_size", 0) or 0)
        if check_fingerprint:
            fp = fingerprint(model)
            for spec in specs:
                spec.vector.check_model(fp)
        for spec in specs:
            for layer in spec.layer_list():
                if not 0 <= layer < n_layers:
                    raise ValueError(f"layer {layer} out of range for a {n_layers}-layer model")
                if layer not in spec.vector.directions:
                    raise ValueError(f"vector {spec.vector.name!r} has no direction for layer {layer}")
            if hidden and spec.vector.hidden_size != hidden:
                raise ValueError(f"vector {spec.vector.name!r} has size {spec.vector.hidden_size}, model {hidden}")
        self.specs = list(specs)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._mask: torch.Tensor | None = None
        self._deltas: dict[int, torch.Tensor] = {}
        self._cast: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}
        self.set_coefs([spec.coefs for spec in self.specs])

    def set_coefs(self, coefs: Sequence[Coefs]) -> None:
        """Replace every spec's coefficients (one entry per spec; each a scalar or one value per row)."""
        if len(coefs) != len(self.specs):
            raise ValueError(f"need {len(self.specs)} coefficient entries, got {len(coefs)}")
        rows = [_row_coefs(c) for c in coefs]
        batch = {r.numel() for r in rows if r.numel() != 1}
        if len(batch) > 1:
            raise ValueError(f"per-row coefficient lists disagree on batch size: {sorted(batch)}")
        deltas: dict[int, torch.Tensor] = {}
        for spec, row in zip(self.specs, rows, strict=True):
            if not bool(row.any()):
                continue
            for layer in spec.layer_list():
                # (coef * norm) in float64, rounded once, times the unit direction: the same arithmetic as
                # SteeringVector.delta, so a single vector's delta is reproducible bit for bit.
                scale = (row.double() * spec.vector.norms[layer]).float()
                add = scale[:, None] * spec.vector.directions[layer][None, :]
                deltas[layer] = deltas[layer] + add if layer in deltas else add
        self._deltas = deltas
        self._cast = {}

    # -- hooks ------------------------------------------------------------------------------------------------------
    def _capture_mask(self, _module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        mask = kwargs.get("attention_mask")
        self._mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None

    def _make_hook(self, layer: int) -> Any:
        def hook(_module: nn.Module, _args: tuple[Any, ...], output: Any) -> Any:
            delta = self._deltas.get(layer)
            if delta is None:
                return None
            hidden = hidden_of(output)
            key = (layer, hidden.dtype, hidden.device)
            d = self._cast.get(key)
            if d is None:
                d = self._cast[key] = delta.to(device=hidden.device, dtype=hidden.dtype)
            if d.shape[0] not in (1, hidden.shape[0]):
                raise ValueError(f"steering has {d.shape[0]} row coefficients but the batch has {hidden.shape[0]} rows")
            add = d[:, None, :]
            if self._mask is not None:
                keep = self._mask[:, -hidden.shape[1]:].to(device=hidden.device, dtype=hidden.dtype)
                add = add * keep[:, :, None]
            return replace_hidden(output, hidden + add)

        return hook

    def __enter__(self) -> Steering:
        try:
            self._handles.append(
                backbone(self.model).register_forward_pre_hook(self._capture_mask, with_kwargs=True)
            )
            steered = sorted({layer for spec in self.specs for layer in spec.layer_list()})
            for layer in steered:
                self._handles.append(self.layers[layer].register_forward_hook(self._make_hook(layer)))
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._mask = None

    def __exit__(self, *exc: object) -> None:
        self.close()


def steer(model: nn.Module, specs: Sequence[SteerSpec], *, check_fingerprint: bool = True) -> Steering:
    """`with steer(model, [SteerSpec(vec, [0.0, 0.4])]): model.generate(...)`."""
    return Steering(model, specs, check_fingerprint=check_fingerprint)


def active_hooks(model: nn.Module) -> int:
    """Number of forward (pre-)hooks on the model's modules: 0 when nothing is steering or recording."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@contextmanager
def record_residuals(model: nn.Module, layers: Sequence[int]) -> Iterator[dict[int, list[torch.Tensor]]]:
    """Record the output of each listed decoder layer for every forward call, detached, as float32 on CPU."""
    blocks = decoder_layers(model)
    store: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    handles = []

    def make(layer: int) -> Any:
        def hook(_m: nn.Module, _a: tuple[Any, ...], output: Any) -> None:
            store[layer].append(hidden_of(output).detach().float().cpu())

        return hook

    try:
        for layer in layers:
            handles.append(blocks[layer].register_forward_hook(make(layer)))
        yield store
    finally:
        for h in handles:
            h.remove()
