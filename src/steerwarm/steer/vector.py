"""SteeringVector: one unit direction per layer, with the facts needed to apply it safely and in calibrated units.

Invariants:
- `directions[layer]` is a float32 unit vector of the model's hidden size; `norms[layer]` is the typical residual
  norm at that layer (median over tokens, position 0 excluded: it carries an outlier norm two orders of magnitude
  above the rest). Steering with raw coefficient c adds exactly `c * norms[layer] * directions[layer]`, so c is in
  units of "typical activation size" and transfers between layers.
- Layer indices are 0-based decoder layers; the hook point `resid_post` is the output of that layer. llama.cpp
  control vectors use the same index: its tensor `direction.N` is added to the output of layer N (0-based), and it
  has no slot for layer 0, so exporting a layer-0 direction is refused rather than silently shifted.
- A vector is bound to the model it was made from by fingerprint; applying it elsewhere raises with both prints.
- Saving and loading (safetensors or GGUF) round-trips every tensor bit-exactly and every metadata field.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from steerwarm import __version__
from steerwarm.paths import display

HOOK_POINTS = ("resid_post",)
GGUF_META_KEY = "steerwarm.metadata"


class FingerprintMismatchError(ValueError):
    """A steering vector was applied to a model other than the one it was made for."""


def data_hash(texts: Iterable[str]) -> str:
    """Stable short hash of the texts a vector was built from (order matters)."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


@dataclass
class Provenance:
    method: str
    data_hash: str = ""
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    steerwarm_version: str = __version__
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Calibration:
    """Monotone map from the warmth dial to a raw coefficient, with the measured curve it was fitted on.

    `dial` and `coef` are equally long, strictly increasing lists; between points the map is linear, beyond the ends
    it extends the end segments linearly. `curve` keeps the measurements (free-form rows) it came from.
    """

    dial: list[float]
    coef: list[float]
    curve: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    def __post_init__(self) -> None:
        if len(self.dial) != len(self.coef) or len(self.dial) < 2:
            raise ValueError("calibration needs at least two (dial, coef) points of equal count")
        for seq, label in ((self.dial, "dial"), (self.coef, "coef")):
            if any(b <= a for a, b in itertools.pairwise(seq)):
                raise ValueError(f"calibration {label} values must be strictly increasing: {seq}")

    def coef_for(self, warmth: float) -> float:
        d, c = self.dial, self.coef
        i = 1
        while i < len(d) - 1 and warmth > d[i]:
            i += 1
        lo = i - 1
        t = (warmth - d[lo]) / (d[i] - d[lo])
        return c[lo] + t * (c[i] - c[lo])


@dataclass
class SteeringVector:
    directions: dict[int, torch.Tensor]
    norms: dict[int, float]
    model_fingerprint: str
    model_name: str
    provenance: Provenance
    name: str = "vector"
    hook_point: str = "resid_post"
    layers: list[int] = field(default_factory=list)
    calibration: Calibration | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.hook_point not in HOOK_POINTS:
            raise ValueError(f"unknown hook point {self.hook_point!r}; supported: {HOOK_POINTS}")
        if not self.directions:
            raise ValueError("a steering vector needs at least one layer")
        if set(self.norms) != set(self.directions):
            raise ValueError("norms and directions must cover the same layers")
        sizes = {int(t.numel()) for t in self.directions.values()}
        if len(sizes) != 1:
            raise ValueError(f"directions have different sizes: {sorted(sizes)}")
        self.directions = {int(k): v.detach().to(torch.float32).reshape(-1).cpu() for k, v in self.directions.items()}
        self.norms = {int(k): float(v) for k, v in self.norms.items()}
        if not self.layers:
            self.layers = sorted(self.directions)
        missing = [layer for layer in self.layers if layer not in self.directions]
        if missing:
            raise ValueError(f"default layers {missing} have no direction")

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_differences(
        cls,
        diffs: Mapping[int, torch.Tensor],
        norms: Mapping[int, float],
        *,
        model_fingerprint: str,
        model_name: str,
        provenance: Provenance,
        name: str = "vector",
        layers: Sequence[int] = (),
        extra: dict[str, Any] | None = None,
    ) -> SteeringVector:
        """Normalise raw per-layer differences into unit directions; their raw norms go into `extra`."""
        directions: dict[int, torch.Tensor] = {}
        raw: dict[str, float] = {}
        for layer, d in diffs.items():
            n = float(d.float().norm())
            if not math.isfinite(n) or n == 0.0:
                raise ValueError(f"layer {layer}: difference is zero or not finite; cannot make a direction")
            directions[int(layer)] = d.float() / n
            raw[str(layer)] = n
        info = dict(extra or {})
        info.setdefault("raw_diff_norm", raw)
        return cls(directions, dict(norms), model_fingerprint, model_name, provenance, name=name,
                   layers=list(layers), extra=info)

    @property
    def hidden_size(self) -> int:
        return int(next(iter(self.directions.values())).numel())

    def delta(self, layer: int, coef: float) -> torch.Tensor:
        """The exact vector added at `layer` for raw coefficient `coef`."""
        return coef * self.norms[layer] * self.directions[layer]

    def check_model(self, model_fingerprint: str) -> None:
        if model_fingerprint != self.model_fingerprint:
            raise FingerprintMismatchError(
                f"steering vector {self.name!r} was made for model {self.model_name!r} with fingerprint "
                f"{self.model_fingerprint}, but the model it is applied to has fingerprint {model_fingerprint}"
            )

    def coef_for_warmth(self, warmth: float) -> float:
        if self.calibration is None:
            raise ValueError(f"vector {self.name!r} has no dial calibration; use a raw coefficient instead")
        return self.calibration.coef_for(warmth)

    # -- metadata -----------------------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        return {
            "format": "steerwarm.vector/1",
            "name": self.name,
            "hook_point": self.hook_point,
            "model_fingerprint": self.model_fingerprint,
            "model_name": self.model_name,
            "layers": self.layers,
            "norms": {str(k): v for k, v in sorted(self.norms.items())},
            "provenance": asdict(self.provenance),
            "calibration": asdict(self.calibration) if self.calibration else None,
            "extra": self.extra,
        }

    @classmethod
    def _from_parts(cls, directions: dict[int, torch.Tensor], meta: dict[str, Any]) -> SteeringVector:
        if meta.get("format") != "steerwarm.vector/1":
            raise ValueError(f"not a steerwarm vector (format {meta.get('format')!r})")
        cal = meta.get("calibration")
        return cls(
            directions=directions,
            norms={int(k): float(v) for k, v in meta["norms"].items()},
            model_fingerprint=meta["model_fingerprint"],
            model_name=meta["model_name"],
            provenance=Provenance(**meta["provenance"]),
            name=meta["name"],
            hook_point=meta["hook_point"],
            layers=[int(x) for x in meta["layers"]],
            calibration=Calibration(**cal) if cal else None,
            extra=meta.get("extra", {}),
        )

    # -- safetensors --------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"direction.{k}": v.contiguous() for k, v in sorted(self.directions.items())}
        save_file(tensors, str(path), metadata={"steerwarm": json.dumps(self.metadata(), sort_keys=True)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> SteeringVector:
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no steering vector at {path}")
        if path.suffix == ".gguf":
            return cls.from_gguf(path)
        with safe_open(str(path), framework="pt") as fh:
            raw_meta = (fh.metadata() or {}).get("steerwarm")
            if raw_meta is None:
                raise ValueError(f"{path} has no steerwarm metadata; is it a steerwarm vector?")
            directions = {int(k.split(".", 1)[1]): fh.get_tensor(k) for k in fh.keys()}
        return cls._from_parts(directions, json.loads(raw_meta))

    # -- llama.cpp control-vector GGUF ----------------------------------------------------------------------------
    def to_gguf(self, path: str | Path, coef: float = 1.0, model_hint: str = "llama") -> Path:
        """Write `direction.N = coef * norms[N] * directions[N]` for every layer (see the layer convention above).

        llama.cpp scales the file's tensors by its own strength flag; steerwarm metadata rides along under
        `steerwarm.metadata` so a steerwarm reader restores the exact vector.
        """
        import gguf
        import numpy as np

        if 0 in self.directions:
            raise ValueError("llama.cpp control vectors cannot steer layer 0 (direction.0 is invalid there); "
                             "drop layer 0 before exporting")
        if coef == 0:
            raise ValueError("coef must be non-zero: a zero control vector carries no direction")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = gguf.GGUFWriter(str(path), "controlvector")
        writer.add_string("controlvector.model_hint", model_hint)
        writer.add_uint32("controlvector.layer_count", len(self.directions))
        meta = self.metadata()
        meta["gguf_coef"] = coef
        # The exact unit directions ride in the metadata (llama.cpp ignores it) so a steerwarm import is bit-exact.
        meta["unit_directions_b64"] = {
            str(k): base64.b64encode(v.numpy().astype("<f4").tobytes()).decode("ascii")
            for k, v in sorted(self.directions.items())
        }
        writer.add_string(GGUF_META_KEY, json.dumps(meta, sort_keys=True))
        for layer in sorted(self.directions):
            writer.add_tensor(f"direction.{layer}", self.delta(layer, coef).numpy().astype(np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path

    @classmethod
    def from_gguf(
        cls, path: str | Path, *, model_fingerprint: str = "unknown", model_name: str = "unknown"
    ) -> SteeringVector:
        """Read a control-vector GGUF. A steerwarm export restores exactly; a foreign one (repeng, llama.cpp) becomes
        unit directions whose norms are the file's per-layer magnitudes, so raw coefficient 1 reproduces the file."""
        import gguf
        import numpy as np

        reader = gguf.GGUFReader(str(path))
        raw: dict[int, torch.Tensor] = {}
        for t in reader.tensors:
            if not t.name.startswith("direction."):
                continue
            layer = int(t.name.split(".", 1)[1])
            raw[layer] = torch.from_numpy(np.array(t.data, dtype=np.float32).reshape(-1))
        if not raw:
            raise ValueError(f"{path} holds no direction.N tensors")
        field_ = reader.fields.get(GGUF_META_KEY)
        if field_ is not None:
            meta = json.loads(bytes(field_.parts[field_.data[0]]).decode("utf-8"))
            coef = float(meta.pop("gguf_coef"))
            units = meta.pop("unit_directions_b64")
            directions = {
                int(k): torch.from_numpy(np.frombuffer(base64.b64decode(v), dtype="<f4").copy())
                for k, v in units.items()
            }
            vec = cls._from_parts(directions, meta)
            for layer, tensor in raw.items():
                if not torch.allclose(tensor, vec.delta(layer, coef), rtol=1e-5, atol=1e-6):
                    raise ValueError(f"{path}: tensor direction.{layer} disagrees with its steerwarm metadata "
                                     "(edited by another tool?)")
            return vec
        norms = {k: float(v.norm()) for k, v in raw.items()}
        return cls(
            directions={k: v / norms[k] for k, v in raw.items()},
            norms=norms,
            model_fingerprint=model_fingerprint,
            model_name=model_name,
            provenance=Provenance(method="gguf-import", params={"source": display(path)}),
            name=Path(path).stem,
        )
