"""The calibrated warmth dial: fit the map from warmth to a raw coefficient from a measured curve of steered answers
and a fine-tune's measured warmth, and store it in the vector.

Invariants:
- Dial units: the dial value of a measured point is (mean p_warm(c) - mean p_warm(0)) / (fine-tune mean - mean
  p_warm(0)): 0 at the base and 1 where the steered model is as warm as the fine-tune (for the cold fine-tune this
  is a unit of coldness: 1 = as cold as the cold fine-tune, as `steer.dial.Dial` expects).
- The map is monotone by construction: isotonic regression on each side of 0, anchored at (0, 0); a plateau keeps
  only its point nearest 0. Dial 1 lies between two measured points (linear interpolation), never beyond the last:
  a curve that does not reach the fine-tune raises `CalibrationError`, listing what was measured.
- The `Calibration` maps 0 to exactly 0, is strictly increasing in dial and coefficient, and keeps every measured
  row (coef, raw and fitted dial, p_warm mean and SE, NLL mean and SE) in `curve`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from steerwarm.meter.measure import Measurement
from steerwarm.steer.vector import Calibration, SteeringVector

DEFAULT_COEFS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)


class CalibrationError(ValueError):
    """The measured curve cannot be turned into a dial (for example it never reaches the fine-tune)."""


# -- calibration ------------------------------------------------------------------------------------------------------
def _isotonic(xs: Sequence[float], ys: Sequence[float]) -> list[float]:
    if len(xs) < 2:
        return [float(y) for y in ys]
    from sklearn.isotonic import IsotonicRegression

    return [float(v) for v in IsotonicRegression(increasing=True).fit_transform(list(xs), list(ys))]


def _describe(curve: Sequence[Measurement], finetune: Measurement) -> str:
    pts = "; ".join(f"coef {m.coef or 0.0:+g}: p_warm {m.p_warm.mean:.3f} ± {m.p_warm.se:.3f}" for m in curve)
    ref = finetune.p_warm
    return f"measured {pts}; {finetune.label}: p_warm {ref.mean:.3f} ± {ref.se:.3f}"


def fit_calibration(curve: Sequence[Measurement], finetune: Measurement) -> Calibration:
    """A monotone dial from measured points (coefficient 0 among them) and a fine-tune's reading (see the module
    invariants)."""
    if any(m.coef is None for m in curve):
        raise CalibrationError("every point of the curve needs a coefficient")
    base = next((m for m in curve if m.coef == 0), None)
    if base is None:
        raise CalibrationError("the curve needs a measurement at coefficient 0 (the base model)")
    denom = finetune.p_warm.mean - base.p_warm.mean
    if not math.isfinite(denom) or abs(denom) < 1e-9:
        raise CalibrationError(f"the fine-tune is not warmer or colder than the base: {_describe(curve, finetune)}")
    raw = {float(m.coef or 0.0): (m.p_warm.mean - base.p_warm.mean) / denom for m in curve}
    pos = sorted(c for c in raw if c > 0)
    neg = sorted(c for c in raw if c < 0)
    fitted = {0.0: 0.0}
    fitted.update({c: max(0.0, v) for c, v in zip(pos, _isotonic(pos, [raw[c] for c in pos]), strict=True)})
    fitted.update({c: min(0.0, v) for c, v in zip(neg, _isotonic(neg, [raw[c] for c in neg]), strict=True)})
    knots = [(0.0, 0.0)]
    for c in pos:  # outward from 0: a plateau keeps its point nearest 0
        if fitted[c] > knots[-1][1] + 1e-12:
            knots.append((c, fitted[c]))
    low: list[tuple[float, float]] = []
    for c in reversed(neg):
        if fitted[c] < (low[-1][1] if low else 0.0) - 1e-12:
            low.append((c, fitted[c]))
    hit = next((i for i, (_, d) in enumerate(knots) if d >= 1.0), None)
    if hit is None:
        top = max(fitted[c] for c in pos) if pos else 0.0
        raise CalibrationError(f"the steered curve never reaches the fine-tune (fitted dial reaches {top:.3f} of 1); "
                               f"{_describe(curve, finetune)}; measure larger coefficients (--coefs)")
    (c0, d0), (c1, d1) = knots[hit - 1], knots[hit]
    if d1 > 1.0:
        knots.insert(hit, (c0 + (1.0 - d0) / (d1 - d0) * (c1 - c0), 1.0))
    points = list(reversed(low)) + knots
    rows = []
    for m in curve:
        row = m.row()
        row.update(dial_raw=raw[float(m.coef or 0.0)], dial=fitted[float(m.coef or 0.0)])
        rows.append(row)
    note = (f"dial = (p_warm - base) / (fine-tune - base), {finetune.label} p_warm "
            f"{finetune.p_warm.mean:.4f} ± {finetune.p_warm.se:.4f}, base {base.p_warm.mean:.4f} ± "
            f"{base.p_warm.se:.4f}; isotonic fit anchored at 0; dial 1 at coef {knots[hit][0]:.4f} by interpolation")
    return Calibration(dial=[d for _, d in points], coef=[c for c, _ in points], curve=rows, note=note)


def apply_calibration(vector: SteeringVector, calibration: Calibration, finetune: Measurement,
                      layers: Sequence[int] | None = None) -> None:
    """Store the calibration (for the layers it was measured at) and the fine-tune's readings on the vector."""
    if layers is not None:
        vector.layers = list(layers)
    vector.calibration = calibration
    vector.extra["calibration_finetune"] = finetune.row()
