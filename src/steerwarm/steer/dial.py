"""The warmth dial: map a user-facing warmth value per request to steering specs on calibrated vectors.

Invariants:
- warmth 0 steers nothing (both coefficients exactly 0), so the base model's output is reproduced bit for bit.
- warmth > 0 uses the `warm` vector with coefficient `warm.calibration.coef_for(warmth)`; warmth < 0 uses the
  `cold` vector with `cold.calibration.coef_for(-warmth)` (its calibration is in units of coldness, where 1 means
  "as cold as the cold fine-tune"). Without a cold vector, negative warmth uses the warm vector's own calibration at
  the negative value (a signed calibration). Both calibrations must map 0 to 0.
- Rows of one batch may sit anywhere on the dial: each spec carries one coefficient per row, zero for rows on the
  other side, so a mixed batch is one forward pass.
- `DIAL_RANGE` bounds what a request may ask for; values beyond the measured curve are linear extrapolations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from steerwarm.steer.hooks import SteerSpec
from steerwarm.steer.vector import SteeringVector

DIAL_RANGE = (-3.0, 3.0)


WARMTH_SUFFIX = "@warmth="


def split_warmth_suffix(name: str, *, require_name: bool = True) -> tuple[str, float | None]:
    """`MODEL@warmth=0.5` -> ("MODEL", 0.5); a name without "@" -> (name, None). ValueError for any other suffix
    or a warmth that is not a finite number (the server's `model` suffix and endpoint target specs alike, where
    `require_name=False` lets `@warmth=0.5` alone mean the endpoint's first model)."""
    if "@" not in name:
        return name, None
    base, sep, text = name.partition(WARMTH_SUFFIX)
    if not sep or (require_name and not base) or "@" in base:
        raise ValueError("the only suffix understood after a model name is '@warmth=<number>', e.g. MODEL@warmth=0.5")
    try:
        warmth = float(text)
    except ValueError:
        raise ValueError(f"warmth {text!r} is not a number (e.g. MODEL@warmth=0.5)") from None
    if not math.isfinite(warmth):
        raise ValueError(f"warmth must be a finite number, got {text!r}")
    return base, warmth + 0.0  # -0.0 -> 0.0


def check_warmth(warmth: float) -> None:
    """Refuse (ValueError) a warmth outside `DIAL_RANGE`, the range every steerwarm dial serves."""
    lo, hi = DIAL_RANGE
    if not lo <= warmth <= hi:
        raise ValueError(f"warmth must be within [{lo}, {hi}], got {warmth}")


@dataclass(frozen=True)
class Dial:
    warm: SteeringVector
    cold: SteeringVector | None = None

    def __post_init__(self) -> None:
        for vec in (self.warm, self.cold):
            if vec is None:
                continue
            if vec.calibration is None:
                raise ValueError(f"vector {vec.name!r} has no dial calibration; it cannot serve the warmth dial")
            if abs(vec.calibration.coef_for(0.0)) > 1e-9:
                raise ValueError(f"vector {vec.name!r}: calibration must map warmth 0 to coefficient 0")

    @classmethod
    def from_dir(cls, directory: str | Path) -> Dial:
        directory = Path(directory)
        warm_path = directory / "warm.safetensors"
        if not warm_path.is_file():
            raise FileNotFoundError(f"no warm.safetensors in {directory}: the dial needs a calibrated warm vector")
        cold_path = directory / "cold.safetensors"
        cold = SteeringVector.load(cold_path) if cold_path.is_file() else None
        return cls(SteeringVector.load(warm_path), cold)

    def coefficients(self, warmth: float) -> tuple[float, float]:
        """(raw coefficient on the warm vector, raw coefficient on the cold vector) for one warmth value."""
        check_warmth(warmth)
        if warmth == 0:
            return 0.0, 0.0
        if warmth > 0 or self.cold is None:
            return self.warm.coef_for_warmth(warmth), 0.0
        return 0.0, self.cold.coef_for_warmth(-warmth)

    def specs(self, warmths: Sequence[float]) -> list[SteerSpec]:
        """Steering specs for a batch with one warmth per row."""
        pairs = [self.coefficients(w) for w in warmths]
        specs = [SteerSpec(self.warm, [p[0] for p in pairs])]
        if self.cold is not None:
            specs.append(SteerSpec(self.cold, [p[1] for p in pairs]))
        return specs
