"""Layer choice by effect, and the calibrated warmth dial, from measured steered answers.

A measurement steers the base model at one raw coefficient, answers the validation prompts (greedy, one token
budget), and scores the answers with the warmth meter (p_warm, the corpus-trained embedding classifier) and the
coherence cost (the base model's mean negative log-likelihood of the answer given the prompt). Both are reported
as mean and bootstrap standard error over prompts (`warmth.summarize`).

Invariants:
- Every measurement of one run answers the same prompts with the same settings; coefficient 0 is the unsteered
  base model, and it is always measured (it anchors both the layer table and the dial).
- Raw coefficients are in units of the layer's typical norm, so one relative strength compares layers fairly.
- Dial units: the dial value of a measured point is (mean p_warm(c) - mean p_warm(0)) / (reference mean - mean
  p_warm(0)): 0 at the base and 1 where the steered model is as warm as the reference (for a cold reference this is
  a unit of coldness: 1 = as cold as the cold fine-tune, as `dial.Dial` expects).
- The map is monotone by construction: isotonic regression on each side of 0, anchored at (0, 0); a plateau keeps
  only its point nearest 0. Dial 1 lies between two measured points (linear interpolation), never beyond the last:
  a curve that does not reach the reference raises `CalibrationError`, listing what was measured.
- The `Calibration` maps 0 to exactly 0, is strictly increasing in dial and coefficient, and keeps every measured
  row (coef, raw and fitted dial, p_warm mean and SE, NLL mean and SE) in `curve`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from steerwarm.answers import AnswerLog, model_answers, steered_answers
from steerwarm.models import LoadedModel
from steerwarm.vectors import Calibration, SteeringVector
from steerwarm.warmth import Summary, summarize
from steerwarm.warmth_compare import Prompt, base_nll

DEFAULT_COEFS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)


class CalibrationError(ValueError):
    """The measured curve cannot be turned into a dial (for example it never reaches the reference)."""


@dataclass
class Meter:
    """Warmth (p_warm per text) and coherence cost (NLL per (prompt, answer)); injectable for tests."""

    p_warm: Callable[[Sequence[str]], list[float]]
    nll: Callable[[Sequence[str], Sequence[str]], list[float]]

    @classmethod
    def default(cls, scorer: LoadedModel) -> Meter:
        """p_warm from the shipped corpus's classifier; NLL under `scorer` (the base model)."""
        from steerwarm.warmth import WarmthClassifier

        clf = WarmthClassifier.default()
        return cls(clf.p_warm, lambda prompts, answers: base_nll(scorer, prompts, answers))

    def measure(self, label: str, coef: float | None, prompts: Sequence[Prompt], answers: Sequence[str]) -> Measurement:
        return Measurement(label, coef, summarize(self.p_warm(list(answers))),
                           summarize(self.nll([p.text for p in prompts], list(answers))))


@dataclass(frozen=True)
class Measurement:
    """Meter readings of one set of answers: steered at `coef`, or a reference model (label says which)."""

    label: str
    coef: float | None
    p_warm: Summary
    nll: Summary

    def row(self) -> dict[str, Any]:
        return {"label": self.label, "coef": self.coef, "p_warm": self.p_warm.mean, "p_warm_se": self.p_warm.se,
                "nll": self.nll.mean, "nll_se": self.nll.se, "n": self.p_warm.n}


def measure_steered(loaded: LoadedModel, vector: SteeringVector, coef: float, prompts: Sequence[Prompt],
                    meter: Meter, log: AnswerLog, *, layers: Sequence[int] | None = None, max_new_tokens: int = 96,
                    batch_size: int = 8) -> Measurement:
    answers = steered_answers(loaded, vector, coef, prompts, log, layers=layers, max_new_tokens=max_new_tokens,
                              batch_size=batch_size)
    label = "base" if coef == 0 else f"coef {coef:+g} @ {list(layers) if layers is not None else vector.layers}"
    return meter.measure(label, coef, prompts, answers)


def measure_curve(loaded: LoadedModel, vector: SteeringVector, prompts: Sequence[Prompt], coefs: Sequence[float],
                  meter: Meter, log: AnswerLog, *, layers: Sequence[int] | None = None, max_new_tokens: int = 96,
                  batch_size: int = 8) -> list[Measurement]:
    """Measurements at 0 and every coefficient in `coefs`, sorted by coefficient."""
    grid = sorted({0.0, *(float(c) for c in coefs)})
    return [measure_steered(loaded, vector, c, prompts, meter, log, layers=layers, max_new_tokens=max_new_tokens,
                            batch_size=batch_size) for c in grid]


def measure_reference(tuned: LoadedModel, prompts: Sequence[Prompt], meter: Meter, log: AnswerLog, *,
                      label: str, max_new_tokens: int = 96, batch_size: int = 8) -> Measurement:
    """Meter readings of a reference model's own greedy answers (a fine-tune), scored like the steered ones."""
    answers = model_answers(tuned, prompts, log, max_new_tokens=max_new_tokens, batch_size=batch_size,
                            desc=f"answers {label}")
    return meter.measure(label, None, prompts, answers)


# -- layer choice ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerRow:
    layer: int
    coef: float
    p_warm: float
    p_warm_se: float
    nll: float
    nll_se: float
    gain: float
    nll_increase: float


def layer_table(loaded: LoadedModel, vector: SteeringVector, prompts: Sequence[Prompt], layers: Sequence[int],
                meter: Meter, log: AnswerLog, *, rel_coef: float = 0.4, sense: int = 1, max_new_tokens: int = 96,
                batch_size: int = 8) -> tuple[Measurement, list[LayerRow]]:
    """Steer one layer at a time at raw coefficient `rel_coef` (x typical norm): warmth gained (`sense` +1: p_warm
    up; -1: p_warm down) and NLL increase against the unsteered base."""
    if sense not in (1, -1):
        raise ValueError("sense must be +1 (warmer) or -1 (colder)")
    base = measure_steered(loaded, vector, 0.0, prompts, meter, log, max_new_tokens=max_new_tokens,
                           batch_size=batch_size)
    rows = []
    for layer in layers:
        m = measure_steered(loaded, vector, rel_coef, prompts, meter, log, layers=[layer],
                            max_new_tokens=max_new_tokens, batch_size=batch_size)
        rows.append(LayerRow(layer, rel_coef, m.p_warm.mean, m.p_warm.se, m.nll.mean, m.nll.se,
                             sense * (m.p_warm.mean - base.p_warm.mean), m.nll.mean - base.nll.mean))
    return base, rows


def choose_layer(rows: Sequence[LayerRow], nll_cap: float) -> LayerRow:
    """The row with the largest warmth gain among those whose NLL increase is at most `nll_cap`."""
    ok = [r for r in rows if r.nll_increase <= nll_cap and r.gain > 0]
    if not ok:
        seen = ", ".join(f"layer {r.layer}: gain {r.gain:+.3f}, NLL {r.nll_increase:+.3f}" for r in rows)
        raise CalibrationError(f"no layer gains warmth within an NLL increase of {nll_cap}: {seen}; "
                               "lower the coefficient or raise the cap")
    return max(ok, key=lambda r: (r.gain, -r.layer))


def store_layer_choice(vector: SteeringVector, base: Measurement, rows: Sequence[LayerRow], chosen: LayerRow,
                       nll_cap: float, sense: int) -> None:
    """Make `chosen` the vector's default layer and keep the whole table in `vector.extra['layer_table']`."""
    vector.layers = [chosen.layer]
    vector.extra["layer_table"] = {"chosen": chosen.layer, "nll_cap": nll_cap, "sense": sense,
                                   "base": base.row(), "rows": [asdict(r) for r in rows]}


# -- calibration ------------------------------------------------------------------------------------------------------
def _isotonic(xs: Sequence[float], ys: Sequence[float]) -> list[float]:
    if len(xs) < 2:
        return [float(y) for y in ys]
    from sklearn.isotonic import IsotonicRegression

    return [float(v) for v in IsotonicRegression(increasing=True).fit_transform(list(xs), list(ys))]


def _describe(curve: Sequence[Measurement], reference: Measurement) -> str:
    pts = "; ".join(f"coef {m.coef or 0.0:+g}: p_warm {m.p_warm.mean:.3f} ± {m.p_warm.se:.3f}" for m in curve)
    ref = reference.p_warm
    return f"measured {pts}; reference {reference.label}: p_warm {ref.mean:.3f} ± {ref.se:.3f}"


def fit_calibration(curve: Sequence[Measurement], reference: Measurement) -> Calibration:
    """A monotone dial from measured points (coefficient 0 among them) and a reference (see module invariants)."""
    if any(m.coef is None for m in curve):
        raise CalibrationError("every point of the curve needs a coefficient")
    base = next((m for m in curve if m.coef == 0), None)
    if base is None:
        raise CalibrationError("the curve needs a measurement at coefficient 0 (the base model)")
    denom = reference.p_warm.mean - base.p_warm.mean
    if not math.isfinite(denom) or abs(denom) < 1e-9:
        raise CalibrationError(f"the reference is not warmer or colder than the base: {_describe(curve, reference)}")
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
        raise CalibrationError(f"the steered curve never reaches the reference (fitted dial reaches {top:.3f} of 1); "
                               f"{_describe(curve, reference)}; measure larger coefficients (--coefs)")
    (c0, d0), (c1, d1) = knots[hit - 1], knots[hit]
    if d1 > 1.0:
        knots.insert(hit, (c0 + (1.0 - d0) / (d1 - d0) * (c1 - c0), 1.0))
    points = list(reversed(low)) + knots
    rows = []
    for m in curve:
        row = m.row()
        row.update(dial_raw=raw[float(m.coef or 0.0)], dial=fitted[float(m.coef or 0.0)])
        rows.append(row)
    note = (f"dial = (p_warm - base) / (reference - base), reference {reference.label} p_warm "
            f"{reference.p_warm.mean:.4f} ± {reference.p_warm.se:.4f}, base {base.p_warm.mean:.4f} ± "
            f"{base.p_warm.se:.4f}; isotonic fit anchored at 0; dial 1 at coef {knots[hit][0]:.4f} by interpolation")
    return Calibration(dial=[d for _, d in points], coef=[c for c, _ in points], curve=rows, note=note)


def apply_calibration(vector: SteeringVector, calibration: Calibration, reference: Measurement,
                      layers: Sequence[int] | None = None) -> None:
    """Store the calibration (for the layers it was measured at) and the reference's readings on the vector."""
    if layers is not None:
        vector.layers = list(layers)
    vector.calibration = calibration
    vector.extra["calibration_reference"] = reference.row()
