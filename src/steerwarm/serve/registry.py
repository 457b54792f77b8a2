"""The vectors a server may apply: a registry by name, the warmth dial, and the warmth monitor.

Invariants:
- Requests name vectors; they never give a path. The registered names are the stems of the `*.safetensors` files
  in the vectors folder whose fingerprint and size match the served model; the rest are skipped with a reason.
- The dial is enabled only when `warm.safetensors` (and, if present, `cold.safetensors`) carry calibrations
  (`steerwarm.dial.Dial` decides); otherwise any warmth other than 0 is refused with the reason, and raw steering by
  name still works.
- `RowSteering` is a frozen, hashable value: two rows steer identically iff their values are equal. Warmth 0 with
  no raw entries adds nothing at all (Dial guarantees coefficient 0), so it is the base model bit for bit.
- `specs(rows)` returns one `SteerSpec` per (vector, layers) key with one coefficient per row; its `keys` change
  only when the set of keys does, so the engine can reuse its hooks and just call `Steering.set_coefs`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from steerwarm.serve.errors import APIError
from steerwarm.steer.dial import DIAL_RANGE, Dial
from steerwarm.steer.hooks import SteerSpec
from steerwarm.steer.vector import SteeringVector

log = logging.getLogger("steerwarm.serve")


@dataclass(frozen=True)
class RawSteer:
    vector: str
    layers: tuple[int, ...]
    coef: float


@dataclass(frozen=True)
class RowSteering:
    warmth: float = 0.0
    raw: tuple[RawSteer, ...] = ()


@dataclass(frozen=True)
class Monitor:
    """Where the warmth monitor reads: a layer, the unit warm direction there, and that layer's typical norm."""

    vector: str
    layer: int
    direction: torch.Tensor
    norm: float


SpecKey = tuple[str, tuple[int, ...]]


class ServedModel(Protocol):
    """What the registry checks vectors against: a `LoadedModel`, or the facts an engine that holds the weights in its
    own layout (vLLM) reads from the model folder (`steerwarm.model.load.fingerprint_files`)."""

    @property
    def fingerprint(self) -> str: ...

    @property
    def hidden_size(self) -> int: ...

    @property
    def num_layers(self) -> int: ...


class SteeringRegistry:
    def __init__(self, vectors: dict[str, SteeringVector], dial: Dial | None, *, dial_note: str,
                 num_layers: int, skipped: dict[str, str] | None = None, source: str = "") -> None:
        self.vectors = vectors
        self.dial = dial
        self.dial_note = dial_note
        self.num_layers = num_layers
        self.skipped = skipped or {}
        self.source = source
        self.monitor: Monitor | None = None
        if dial is not None:
            layer = dial.warm.layers[0]
            self.monitor = Monitor("warm", layer, dial.warm.directions[layer], dial.warm.norms[layer])
        self._dial_keys: list[SpecKey] = []
        if dial is not None:
            self._dial_keys.append(("warm", tuple(dial.warm.layers)))
            if dial.cold is not None:
                self._dial_keys.append(("cold", tuple(dial.cold.layers)))

    # -- construction ---------------------------------------------------------------------------------------------
    @classmethod
    def from_dir(cls, directory: str | Path | None, loaded: ServedModel) -> SteeringRegistry:
        """Register every vector in `directory` that fits `loaded`; enable the dial if warm/cold are calibrated."""
        vectors: dict[str, SteeringVector] = {}
        skipped: dict[str, str] = {}
        folder = Path(directory) if directory is not None else None
        if folder is not None and not folder.is_dir():
            raise FileNotFoundError(f"vectors folder {folder} does not exist; pass --vectors DIR")
        for path in sorted(folder.glob("*.safetensors")) if folder is not None else []:
            try:
                vec = SteeringVector.load(path)
                vec.check_model(loaded.fingerprint)
                if vec.hidden_size != loaded.hidden_size:
                    raise ValueError(f"size {vec.hidden_size} != model hidden size {loaded.hidden_size}")
                bad = [layer for layer in vec.directions if not 0 <= layer < loaded.num_layers]
                if bad:
                    raise ValueError(f"layers {bad} are outside the model's {loaded.num_layers} layers")
            except (ValueError, OSError) as exc:
                skipped[path.stem] = str(exc)
                log.warning("vector %s not registered: %s", path.name, exc)
                continue
            vectors[path.stem] = vec
        dial: Dial | None = None
        if "warm" not in vectors:
            why = "warm.safetensors was skipped: " + skipped["warm"] if "warm" in skipped else (
                f"there is no warm.safetensors in {folder}" if folder is not None else "no vectors folder was given")
            note = f"warmth dial disabled: {why}; only warmth 0 and raw `steering` are served"
        else:
            try:
                dial = Dial(vectors["warm"], vectors.get("cold"))
                cold = ("and cold" if "cold" in vectors
                        else "(no cold vector: negative warmth uses the warm calibration)")
                note = f"warmth dial enabled: calibrated warm {cold} vectors from {folder}"
            except ValueError as exc:
                note = f"warmth dial disabled: {exc}; only warmth 0 and raw `steering` are served"
        return cls(vectors, dial, dial_note=note, num_layers=loaded.num_layers, skipped=skipped,
                   source=str(folder) if folder is not None else "")

    # -- requests ---------------------------------------------------------------------------------------------------
    def resolve(self, warmth: float, raw: Sequence[tuple[str, Sequence[int] | None, float]]) -> RowSteering:
        """Validate a request's dial value and raw steering entries (vector name, layers or None, coef)."""
        lo, hi = DIAL_RANGE
        if not lo <= warmth <= hi:
            raise APIError(400, f"warmth must be within [{lo}, {hi}], got {warmth}", param="warmth",
                           code="warmth_out_of_range")
        if warmth != 0 and self.dial is None:
            raise APIError(400, f"no calibrated dial is loaded, so warmth must be 0 ({self.dial_note}). Restart the "
                           "server with --vectors pointing at a folder holding a calibrated warm.safetensors, or "
                           "steer with a raw `steering` entry by vector name.", param="warmth",
                           code="dial_unavailable")
        entries: list[RawSteer] = []
        for i, (name, layers, coef) in enumerate(raw):
            param = f"steering[{i}]" if len(raw) > 1 else "steering"
            vec = self.vectors.get(name)
            if vec is None:
                known = ", ".join(sorted(self.vectors)) or "none"
                raise APIError(400, f"unknown vector {name!r}: vectors are chosen by registered name only "
                               f"(registered: {known}; GET /v1/models lists them)", param=f"{param}.vector",
                               code="vector_not_found")
            use = tuple(int(x) for x in layers) if layers is not None else tuple(vec.layers)
            missing = [x for x in use if x not in vec.directions]
            if missing:
                raise APIError(400, f"vector {name!r} has no direction for layers {missing}; it has "
                               f"{sorted(vec.directions)}", param=f"{param}.layers", code="invalid_layers")
            if len(set(use)) != len(use):
                raise APIError(400, f"layers repeat in {list(use)}", param=f"{param}.layers", code="invalid_layers")
            entries.append(RawSteer(name, use, float(coef)))
        return RowSteering(float(warmth), tuple(entries))

    def terms(self, row: RowSteering) -> list[tuple[RawSteer, str]]:
        """The non-zero (vector, layers, raw coefficient) terms a row applies, each with its source ("dial" for the
        warm/cold terms of its warmth, "request" for raw entries)."""
        out: list[tuple[RawSteer, str]] = []
        if self.dial is not None and row.warmth != 0:
            cw, cc = self.dial.coefficients(row.warmth)
            if cw != 0:
                out.append((RawSteer("warm", tuple(self.dial.warm.layers), cw), "dial"))
            if cc != 0 and self.dial.cold is not None:
                out.append((RawSteer("cold", tuple(self.dial.cold.layers), cc), "dial"))
        out.extend((r, "request") for r in row.raw)
        return out

    def applied(self, row: RowSteering) -> list[dict[str, object]]:
        """The vectors and raw coefficients a row's steering applies (for the response's `steering` block)."""
        return [{"name": t.vector, "layers": list(t.layers), "coef": t.coef, "source": source}
                for t, source in self.terms(row)]

    # -- batches ----------------------------------------------------------------------------------------------------
    def specs(self, rows: Sequence[RowSteering]) -> tuple[tuple[SpecKey, ...], list[SteerSpec]]:
        """Steering specs for a batch (one coefficient per row) and the keys that identify their hooks."""
        keys: list[SpecKey] = list(self._dial_keys)
        specs: list[SteerSpec] = self.dial.specs([r.warmth for r in rows]) if self.dial is not None else []
        raw_keys = sorted({(r.vector, r.layers) for row in rows for r in row.raw})
        for name, layers in raw_keys:
            coefs = [sum(r.coef for r in row.raw if (r.vector, r.layers) == (name, layers)) for row in rows]
            specs.append(SteerSpec(self.vectors[name], coefs, layers))
            keys.append((name, layers))
        return tuple(keys), specs


def write_provisional_dial(vector: SteeringVector, out_dir: str | Path, coef_at_one: float) -> Path:
    """Write `warm`/`cold` vectors with a provisional linear calibration made from one uncalibrated contrast vector:
    warmth 1 = raw coefficient `coef_at_one` along it, warmth -1 = the same along its negation. A stand-in until
    measured calibrations exist; the calibration note says so."""
    import dataclasses

    from steerwarm.steer.vector import Calibration

    if coef_at_one <= 0:
        raise ValueError("coef_at_one must be positive")
    out = Path(out_dir)
    note = f"provisional: linear, warmth 1 = raw coef {coef_at_one} on {vector.name!r} (not measured)"
    cal = Calibration(dial=[0.0, 1.0], coef=[0.0, float(coef_at_one)], note=note)
    warm = dataclasses.replace(vector, name="warm", calibration=cal)
    cold = dataclasses.replace(vector, name="cold", calibration=cal,
                               directions={k: -v for k, v in vector.directions.items()})
    warm.save(out / "warm.safetensors")
    cold.save(out / "cold.safetensors")
    return out
