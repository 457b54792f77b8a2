"""Dial, prompt and fine-tune at matched warmth on a synthetic sweep with planted outcomes: the matched position, the
interpolated dial and the difference recomputed by hand from results.jsonl, out-of-range references, the plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steerwarm.sweep.effects import ALL, ItemBootstrap
from steerwarm.sweep.folder import load_sweep, read_meter
from steerwarm.sweep.matched import matched_comparisons, matched_markdown, plot_matched
from tests.sweep.test_report import _rate, _raw, make_sweep


def test_reference_compared_with_the_dial_interpolated_at_its_measured_warmth(tmp_path: Path) -> None:
    sweep_dir = make_sweep(tmp_path, n_items=80)
    # meter: dial p_warm = 0.5 + 0.3 w; finetune=warm reads 0.77 (dial 0.9); finetune=cold reads 0.95 (above +1.0)
    rows = [json.loads(x) for x in (sweep_dir / "meter.jsonl").read_text().splitlines()]
    for r in rows:
        if r["label"] == "finetune=cold":
            r["p_warm"] = 0.95
    (sweep_dir / "meter.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    sweep = load_sweep(sweep_dir)
    boots = {t: ItemBootstrap(sweep.points, t, n_boot=400) for t in [*sweep.tasks, ALL]}
    matched = matched_comparisons(sweep, read_meter(sweep), boots)

    assert [c["label"] for c in matched["curve"]] == [p.label for p in sweep.dial]
    warm, cold = (next(r for r in matched["references"] if r["label"] == name)
                  for name in ("finetune=warm", "finetune=cold"))
    assert warm["position"] == pytest.approx(0.9)
    assert warm["dial_weights"] == pytest.approx({"warmth=+0.50": 0.2, "warmth=+1.00": 0.8})
    by_label = {p["label"]: p["run"] for p in json.loads((sweep_dir / "sweep.json").read_text())["points"]}
    rate = {label: {b: _rate(_raw(sweep_dir, run), b) for b in ("none", "stated")} for label, run in by_label.items()}
    pooled = warm["scopes"][ALL]
    dial_none = 0.2 * rate["warmth=+0.50"]["none"] + 0.8 * rate["warmth=+1.00"]["none"]
    assert pooled["error"]["dial"]["effect_pp"] == pytest.approx(100 * dial_none, abs=1e-9)
    assert pooled["error"]["difference"]["effect_pp"] == \
        pytest.approx(100 * (rate["finetune=warm"]["none"] - dial_none), abs=1e-9)

    def belief(label: str) -> float:
        return rate[label]["stated"] - rate[label]["none"]

    want = belief("finetune=warm") - (0.2 * belief("warmth=+0.50") + 0.8 * belief("warmth=+1.00"))
    diff = pooled["belief"]["difference"]
    assert diff["effect_pp"] == pytest.approx(100 * want, abs=1e-9)
    assert diff["ci_low_pp"] < diff["effect_pp"] < diff["ci_high_pp"]
    assert set(warm["scopes"]) == {*sweep.tasks, ALL}

    assert cold["position"] is None and cold["scopes"] == {}
    assert cold["reason"] == "p_warm 0.950 has no matched dial position (above; the dial points read 0.200..0.800)"

    text = "\n".join(matched_markdown(matched, sweep.tasks))
    assert "| finetune=warm | 0.770 | +0.90 |" in text
    assert "- finetune=cold: p_warm 0.950 has no matched dial position (above;" in text
    assert plot_matched(matched, tmp_path / "m.png") == tmp_path / "m.png"
    assert (tmp_path / "m.png").stat().st_size > 10_000


def test_without_meter_readings_there_is_nothing_to_match(tmp_path: Path) -> None:
    sweep = load_sweep(make_sweep(tmp_path, n_items=20, meter=False))
    boots = {t: ItemBootstrap(sweep.points, t, n_boot=50) for t in [*sweep.tasks, ALL]}
    matched = matched_comparisons(sweep, read_meter(sweep), boots)
    assert matched == {"curve": [], "references": []}
    assert matched_markdown(matched, sweep.tasks) == []
