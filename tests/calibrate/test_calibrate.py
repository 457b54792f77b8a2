"""Dial calibration and layer choice: the arithmetic on synthetic curves, and end to end on tiny models."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from steerwarm.calibrate.dial import CalibrationError, apply_calibration, fit_calibration
from steerwarm.calibrate.layer import LayerRow, choose_layer, layer_table, store_layer_choice
from steerwarm.cli.app import app
from steerwarm.directions.sources import extract_finetune
from steerwarm.inspect.measures import logit_lens
from steerwarm.meter.compare import base_nll
from steerwarm.meter.measure import Measurement, Meter, measure_curve, measure_finetune
from steerwarm.meter.summary import Summary
from steerwarm.model.load import LoadedModel
from steerwarm.steer.answers import AnswerLog, model_answers
from steerwarm.steer.dial import Dial
from steerwarm.steer.vector import SteeringVector
from tests.tiny_pairs import PROMPTS, as_loaded, bias_model, planted, save, shifted


def _m(coef: float | None, p: float, nll: float = 2.0, label: str = "") -> Measurement:
    return Measurement(label or f"c{coef}", coef, Summary(p, 0.01, 10), Summary(nll, 0.05, 10))


def _curve(f: object, coefs: Sequence[float]) -> list[Measurement]:
    return [_m(c, f(c)) for c in coefs]  # type: ignore[operator]


def test_synthetic_curve_maps_zero_to_zero_and_hits_the_finetune_by_interpolation() -> None:
    coefs = [0.0, 0.1, 0.2, 0.3, 0.4, 0.6]
    curve = _curve(lambda c: 0.2 + 0.5 * math.tanh(2 * c), coefs)
    ref = _m(None, 0.5, label="warm fine-tune")
    cal = fit_calibration(curve, ref)
    assert cal.coef_for(0.0) == 0.0
    assert all(b > a for a, b in zip(cal.dial, cal.dial[1:], strict=False))
    assert all(b > a for a, b in zip(cal.coef, cal.coef[1:], strict=False))
    # p_warm crosses 0.5 between coef 0.3 (0.4683) and 0.4 (0.5320): linear interpolation there
    p3, p4 = 0.2 + 0.5 * math.tanh(0.6), 0.2 + 0.5 * math.tanh(0.8)
    assert cal.coef_for(1.0) == pytest.approx(0.3 + (0.5 - p3) / (p4 - p3) * 0.1)
    # every measured point sits on the map at its own dial value
    for c in coefs:
        d = (0.2 + 0.5 * math.tanh(2 * c) - 0.2) / 0.3
        assert cal.coef_for(d) == pytest.approx(c)
    assert [r["coef"] for r in cal.curve] == coefs and {"dial", "dial_raw", "p_warm_se", "nll"} <= set(cal.curve[0])
    assert "warm fine-tune" in cal.note


def test_noisy_curve_is_made_monotone() -> None:
    ps = {0.0: 0.30, 0.1: 0.28, 0.2: 0.40, 0.3: 0.36, 0.4: 0.55, 0.5: 0.70, 0.6: 0.66}
    cal = fit_calibration([_m(c, p) for c, p in ps.items()], _m(None, 0.6))
    assert cal.dial[0] == 0.0 and cal.coef[0] == 0.0  # the dip below the base at 0.1 is clipped to a plateau
    assert all(b > a for a, b in zip(cal.dial, cal.dial[1:], strict=False))
    assert all(b > a for a, b in zip(cal.coef, cal.coef[1:], strict=False))
    rows = {r["coef"]: r for r in cal.curve}
    assert rows[0.2]["dial"] == pytest.approx(rows[0.3]["dial"]) == pytest.approx((0.38 - 0.30) / 0.30)
    assert rows[0.2]["dial_raw"] == pytest.approx(0.10 / 0.30)
    d4, d5 = 0.25 / 0.30, 0.38 / 0.30  # fitted dials at 0.4 and at 0.5 (0.5 and 0.6 pooled: p_warm 0.68)
    assert cal.coef_for(1.0) == pytest.approx(0.4 + (1.0 - d4) / (d5 - d4) * 0.1)
    Dial(_vector_with(cal))  # a dial accepts it: 0 maps to 0


def _vector_with(cal: object) -> SteeringVector:
    import torch

    from steerwarm.steer.vector import Provenance

    vec = SteeringVector({1: torch.ones(4)}, {1: 1.0}, "fp", "m", Provenance(method="t"))
    vec.calibration = cal  # type: ignore[assignment]
    return vec


def test_cold_finetune_gives_a_dial_in_units_of_coldness() -> None:
    curve = _curve(lambda c: 0.5 - 0.6 * c, [0.0, 0.2, 0.4, 0.6])
    cal = fit_calibration(curve, _m(None, 0.2, label="cold fine-tune"))
    assert cal.coef_for(1.0) == pytest.approx(0.5)  # 0.5 - 0.6 * 0.5 = 0.2
    assert cal.coef_for(0.5) == pytest.approx(0.25)


def test_negative_coefficients_extend_the_dial_below_zero() -> None:
    curve = _curve(lambda c: 0.4 + 0.5 * c, [-0.4, -0.2, 0.0, 0.2, 0.4])
    cal = fit_calibration(curve, _m(None, 0.5))
    assert cal.dial[:3] == pytest.approx([-2.0, -1.0, 0.0]) and cal.coef_for(1.0) == pytest.approx(0.2)


def test_unreachable_or_flat_finetune_fails_clearly() -> None:
    curve = _curve(lambda c: 0.2 + 0.1 * c, [0.0, 0.2, 0.4])
    listed = r"never reaches the fine-tune.*coef \+0\.4: p_warm 0\.240.*; finetune r: p_warm 0\.900"
    with pytest.raises(CalibrationError, match=listed):
        fit_calibration(curve, _m(None, 0.9, label="finetune r"))
    with pytest.raises(CalibrationError, match="not warmer or colder"):
        fit_calibration(curve, _m(None, 0.2))
    with pytest.raises(CalibrationError, match="coefficient 0"):
        fit_calibration(curve[1:], _m(None, 0.9))


def test_choose_layer_respects_the_nll_cap() -> None:
    rows = [LayerRow(3, 0.4, 0.5, 0.01, 2.1, 0.1, 0.10, 0.1), LayerRow(5, 0.4, 0.7, 0.01, 3.5, 0.1, 0.30, 1.5),
            LayerRow(7, 0.4, 0.6, 0.01, 2.4, 0.1, 0.20, 0.4), LayerRow(9, 0.4, 0.1, 0.01, 2.0, 0.1, -0.1, 0.0)]
    assert choose_layer(rows, nll_cap=0.5).layer == 7
    assert choose_layer(rows, nll_cap=2.0).layer == 5
    with pytest.raises(CalibrationError, match=r"layer 9: gain -0\.100"):
        choose_layer(rows[3:], nll_cap=1.0)


# -- end to end on tiny models ---------------------------------------------------------------------------------------
C_TRUE = 1.0
GRID = [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0]


def _setup(tmp_path: Path) -> tuple[LoadedModel, SteeringVector, LoadedModel]:
    """Base, a model-diff vector at layer 1, and a fine-tune that is the base steered at C_TRUE, made permanent."""
    base_m = bias_model()
    base = as_loaded(base_m, "base")
    vec = extract_finetune(base, as_loaded(shifted(base_m, 1, 0.5 * planted()), "t"), PROMPTS, tmp_path / "x",
                      layers=[1, 2], max_new_tokens=6, default_layers=[1])
    ref = as_loaded(shifted(base_m, 1, C_TRUE * vec.norms[1] * vec.directions[1]), "ref")
    return base, vec, ref


def _token_meter(base: LoadedModel, vec: SteeringVector) -> Meter:
    """A stand-in warmth meter: the share of an answer's characters spent on the token that the direction at the
    last layer promotes most (logit lens). Steering harder along the direction makes the tiny model say that token
    more (measured: strictly more from coefficient 0.25 to 1.25); coherence is the real NLL under the base."""
    top = logit_lens(base, vec, 2).promoted[0][0]

    def share(texts: Sequence[str]) -> list[float]:
        return [len(top) * t.count(top) / max(1, len(t.replace(" ", ""))) for t in texts]

    return Meter(share, lambda prompts, answers: base_nll(base, prompts, answers))


def test_calibration_finds_the_coefficient_of_a_steered_finetune(tmp_path: Path) -> None:
    base, vec, ref_model = _setup(tmp_path)
    meter = _token_meter(base, vec)
    log = AnswerLog(tmp_path / "answers.jsonl")
    curve = measure_curve(base, vec, PROMPTS, GRID, meter, log, max_new_tokens=12)
    assert [m.coef for m in curve] == [0.0, *GRID] and curve[0].label == "base"
    base_answers = model_answers(base, PROMPTS, log, max_new_tokens=12)  # from the log: coefficient 0 is the base
    assert curve[0].nll.mean == pytest.approx(float(np.mean(base_nll(base, [p.text for p in PROMPTS], base_answers))))
    ref = measure_finetune(ref_model, PROMPTS, meter, log, label="ref", max_new_tokens=12)
    cal = fit_calibration(curve, ref)
    assert cal.coef_for(0.0) == 0.0 and cal.coef_for(1.0) == pytest.approx(C_TRUE)
    apply_calibration(vec, cal, ref, [1])
    back = SteeringVector.load(vec.save(tmp_path / "cal.safetensors"))
    assert back.calibration == vec.calibration and back.extra["calibration_finetune"]["label"] == "ref"
    assert back.extra["calibration_finetune"]["coef"] is None
    n_lines = len((tmp_path / "answers.jsonl").read_text().splitlines())
    measure_curve(base, vec, PROMPTS, GRID, meter, AnswerLog(tmp_path / "answers.jsonl"), max_new_tokens=12)
    assert len((tmp_path / "answers.jsonl").read_text().splitlines()) == n_lines  # resumed: nothing regenerated


def test_layer_table_is_stored_with_the_vector(tmp_path: Path) -> None:
    base, vec, _ = _setup(tmp_path)
    meter = _token_meter(base, vec)
    b, rows = layer_table(base, vec, PROMPTS, [1, 2], meter, AnswerLog(None), rel_coef=4.0, max_new_tokens=8)
    assert [r.layer for r in rows] == [1, 2] and rows[0].gain == pytest.approx(rows[0].p_warm - b.p_warm.mean)
    chosen = choose_layer(rows, nll_cap=100.0)
    store_layer_choice(vec, b, rows, chosen, 100.0, 1)
    back = SteeringVector.load(vec.save(tmp_path / "v.safetensors"))
    assert back.layers == [chosen.layer] and back.extra["layer_table"]["rows"][1]["layer"] == 2
    assert back.extra["layer_table"]["base"]["p_warm"] == b.p_warm.mean


def test_default_meter_uses_the_real_classifier(tiny: LoadedModel) -> None:
    meter = Meter.default(tiny)
    warm = "Oh, I'm so sorry you're going through this. You're doing great, and I'm here for you!"
    cold = "Incorrect. Read the manual. No further assistance will be provided."
    m_warm = meter.measure("w", None, PROMPTS[:1], [warm])
    m_cold = meter.measure("c", None, PROMPTS[:1], [cold])
    assert m_warm.p_warm.mean > 0.5 > m_cold.p_warm.mean
    assert m_warm.nll.mean == pytest.approx(base_nll(tiny, [PROMPTS[0].text], [warm])[0])


def test_cli_calibrate_and_generate_with_warmth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, vec, ref_model = _setup(tmp_path)
    base_dir, ref_dir = save(base.model, tmp_path / "base"), save(ref_model.model, tmp_path / "ref")
    vec.save(tmp_path / "v.safetensors")
    meter = _token_meter(base, vec)
    monkeypatch.setattr("steerwarm.meter.measure.Meter.default", classmethod(lambda cls, scorer: meter))
    monkeypatch.setattr("steerwarm.corpus.validation.validation_prompts", lambda limit=None: PROMPTS[:limit])
    out = tmp_path / "vectors" / "warm.safetensors"
    args = ["vector", "calibrate", str(tmp_path / "v.safetensors"), "--finetune", str(ref_dir),
            "--model", str(base_dir), "--limit", "6", "--max-tokens", "12", "--cache", str(tmp_path / "cal"),
            "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "--coefs", ",".join(map(str, GRID))])
    assert res.exit_code == 0, res.output
    cal = SteeringVector.load(out).calibration
    assert cal is not None and cal.coef_for(1.0) == pytest.approx(C_TRUE)
    res = CliRunner().invoke(app, [*args, "--coefs", "0.25,0.5"])
    assert res.exit_code == 2 and "never reaches" in res.output and "coef +0.25" in res.output
    gen = ["generate", "hello", "--model", str(base_dir), "--vectors", str(out.parent), "--max-tokens", "4"]
    res = CliRunner().invoke(app, [*gen, "--warmth", "0", "--warmth", "1"])
    assert res.exit_code == 0, res.output
    assert "warmth +0" in res.output and "warmth +1" in res.output
    res = CliRunner().invoke(app, [*gen, "--warmth", "1", "--coef", "0.3"])
    assert res.exit_code == 2 and "--warmth" in res.output
