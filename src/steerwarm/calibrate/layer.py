"""Layer choice by effect: steer each candidate layer at one relative strength, measure warmth and coherence, and
keep the layer with the best warmth gain whose NLL increase stays under a cap.

Invariants:
- Every layer is measured on the same prompts with the same settings, against the same unsteered base measurement.
- Raw coefficients are in units of the layer's typical norm, so one relative strength compares layers fairly.
- The chosen layer and the whole table are stored in the vector's metadata (`store_layer_choice`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from steerwarm.calibrate.dial import CalibrationError
from steerwarm.corpus.validation import ValidationPrompt
from steerwarm.meter.measure import Measurement, Meter, measure_steered
from steerwarm.model.load import LoadedModel
from steerwarm.steer.answers import AnswerLog
from steerwarm.steer.vector import SteeringVector


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


def layer_table(loaded: LoadedModel, vector: SteeringVector, prompts: Sequence[ValidationPrompt], layers: Sequence[int],
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
