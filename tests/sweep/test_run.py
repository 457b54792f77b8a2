"""Sweeps on the tiny model: dial values parsed without float drift, the paired per-item subsample, a sweep end to
end (one model load, ordinary run folders with identical prompt sets, warmth 0 equal to the base model bit for bit,
the meter, resume without rescoring, refused changes, added points), its report, the CLI and its input errors, and
resume after a real kill."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from steerwarm.bench.contexts import load_contexts
from steerwarm.bench.items import load_task_items
from steerwarm.bench.prompts import build_grid
from steerwarm.bench.runner import RunConfig, per_item_subsample, run_benchmark
from steerwarm.cli.app import app
from steerwarm.meter.compare import base_nll
from steerwarm.meter.measure import Meter
from steerwarm.model.load import LoadedModel
from steerwarm.records import KILL_ENV, SettingsMismatchError, read_records
from steerwarm.sweep.folder import METER_JSONL
from steerwarm.sweep.run import (
    SweepConfig,
    dial_label,
    dial_slug,
    parse_warmths,
    reference_slug,
    run_sweep,
)
from steerwarm.targets.registry import GenSettings, parse_target
from tests.conftest import random_vector
from tests.sweep.conftest import write_dial

ROOT = Path(__file__).resolve().parents[2]
WARM_WORDS = {"warm", "kind", "glad", "happy", "sorry", "friend", "good", "thanks", "please", "help", "hello"}


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def word_meter(base: LoadedModel) -> Meter:
    """A real meter on a toy scale: p_warm = share of an answer's words that are warm words; NLL under the base."""
    def p_warm(texts: Any) -> list[float]:
        out = []
        for t in texts:
            words = t.lower().split()
            out.append(sum(w in WARM_WORDS for w in words) / len(words) if words else 0.0)
        return out

    return Meter(p_warm, lambda prompts, answers: base_nll(base, prompts, answers))


@pytest.fixture()
def dial_dir(tmp_path: Path, btiny: LoadedModel) -> Path:
    """Calibrated warm and cold vectors for the tiny model: warmth +1 = coefficient 1.5 on warm, -1 = 1.0 on cold."""
    return write_dial(tmp_path / "vectors", btiny, cold_layer=1, cold_coef=1.0)


# -- dial values ------------------------------------------------------------------------------------------------------
def test_parse_warmths_ranges_lists_and_errors() -> None:
    grid = parse_warmths("-1.5:1.5:0.25")
    assert len(grid) == 13 and grid[0] == -1.5 and grid[-1] == 1.5 and 0.0 in grid
    assert parse_warmths("0.1:0.5:0.1") == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]  # no 0.30000000000000004
    assert parse_warmths("0.5:1:0.3") == [0.0, 0.5, 0.8]  # STOP is not on the grid: not included
    assert parse_warmths("1, 0.5") == [0.0, 0.5, 1.0]  # 0 added, sorted
    assert parse_warmths("-0") == [0.0] and parse_warmths("0,0,1") == [0.0, 1.0]
    assert parse_warmths("-1:-0.5:0.5") == [-1.0, -0.5, 0.0]
    for bad, msg in [("", "empty"), ("a", "not a number"), ("1:2", "START:STOP:STEP"), ("1:0:0.5", "below"),
                     ("0:1:0", "positive"), ("0:1:-0.5", "positive"), ("nan", "finite"), (",", "no values"),
                     ("0:1:1e-9", "too many")]:
        with pytest.raises(ValueError, match=msg):
            parse_warmths(bad)
    assert (dial_label(0.0), dial_slug(-1.5), dial_slug(0.125)) == ("warmth=+0.00", "warmth-1.50", "warmth+0.125")
    assert reference_slug("finetune=warm") == "ref-finetune-warm" and reference_slug("/x/y/ckpt-2") == "ref-ckpt-2"
    assert reference_slug("prompt=/x/y/kind.txt") == "ref-prompt-kind.txt"
    assert reference_slug("prompt=warm") == "ref-prompt-warm"
    assert reference_slug("prompt=cold@http://h:8000/v1#m") == "ref-prompt-cold-http-h-8000-v1-m"
    assert SweepConfig(warmths=[1.0, -0.0], out=Path("x")).warmths == [0.0, 1.0]


# -- the paired subsample ---------------------------------------------------------------------------------------------
def test_per_item_subsample_is_deterministic_stratified_and_nested(tiny_items: dict[str, Path]) -> None:
    grid = build_grid(load_task_items(["trivia", "medqa"], tiny_items), load_contexts())
    per_item = Counter(p.item.item_id for p in grid)
    assert set(per_item.values()) == {28}
    five = per_item_subsample(grid, 5, seed=0)
    assert Counter(p.item.item_id for p in five) == {k: 5 for k in per_item}
    assert [p.prompt_id for p in five] == [p.prompt_id for p in per_item_subsample(list(grid), 5, seed=0)]
    assert [p.prompt_id for p in five] == [p.prompt_id for p in grid if p in five]  # grid order kept
    other = per_item_subsample(grid, 5, seed=1)
    assert {p.prompt_id for p in other} != {p.prompt_id for p in five}
    nine = per_item_subsample(grid, 9, seed=0)
    assert {p.prompt_id for p in five} <= {p.prompt_id for p in nine}  # nested
    conditions = {p.condition for p in grid}
    assert len(conditions) == 9
    for item in per_item:  # one round of the round-robin: every condition once per item
        assert Counter(p.condition for p in nine if p.item.item_id == item) == {c: 1 for c in conditions}
    assert len(per_item_subsample(grid, 100, seed=0)) == len(grid)
    with pytest.raises(ValueError, match="at least 1"):
        per_item_subsample(grid, 0)


def test_bench_run_per_item_is_result_defining(tiny_folder: Path, tiny_items: dict[str, Path],
                                               tmp_path: Path) -> None:
    target = parse_target(str(tiny_folder))

    def cfg(k: int | None) -> RunConfig:
        return RunConfig(tasks=["trivia"], out=tmp_path / "run", items={"trivia": tiny_items["trivia"]}, limit=1,
                         per_item=k, templates=["original"])

    res = run_benchmark(cfg(3), target, progress=False)
    assert res.total == 3 and json.loads((tmp_path / "run" / "run.json").read_text())["config"]["per_item"] == 3
    with pytest.raises(SettingsMismatchError, match="'per_item'"):
        run_benchmark(cfg(4), target, progress=False)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    del run["config"]["per_item"]  # a folder written before per_item existed held every prompt
    (tmp_path / "run" / "run.json").write_text(json.dumps(run))
    with pytest.raises(SettingsMismatchError, match="'per_item' was None"):
        run_benchmark(cfg(3), target, progress=False)


# -- a sweep end to end -----------------------------------------------------------------------------------------------
def _sweep_cfg(out: Path, tiny_folder: Path, items: dict[str, Path], vdir: Path, **kw: Any) -> SweepConfig:
    base: dict[str, Any] = {"warmths": [-1.0, 1.0], "out": out, "tasks": ["trivia", "medqa"],
                            "items": {t: items[t] for t in ("trivia", "medqa")}, "per_item": 4,
                            "model": str(tiny_folder), "vectors": vdir, "references": ["base"], "batch_size": 8,
                            "meter_prompts": 4, "meter_tokens": 6}
    return SweepConfig(**{**base, **kw})


def test_sweep_end_to_end(tiny_folder: Path, tiny_items: dict[str, Path], dial_dir: Path, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    import steerwarm.model.load as models

    out = tmp_path / "sweep"
    loads: list[str] = []
    real_load = models.load

    def counting_load(name: str = models.DEFAULT_MODEL, *args: Any) -> LoadedModel:
        loads.append(name)
        return real_load(name, *args)

    monkeypatch.setattr(models, "load", counting_load)
    res = run_sweep(_sweep_cfg(out, tiny_folder, tiny_items, dial_dir), progress=False, meter=word_meter)
    assert loads == [str(tiny_folder), str(tiny_folder)]  # the base once for three dial points, the reference once
    sweep = json.loads((out / "sweep.json").read_text())
    assert [p["label"] for p in sweep["points"]] == ["warmth=-1.00", "warmth=+0.00", "warmth=+1.00", "base"]
    by = {p["label"]: p for p in sweep["points"]}
    assert by["warmth=+1.00"] == {"label": "warmth=+1.00", "kind": "dial", "warmth": 1.0, "warm_coef": 1.5,
                                  "cold_coef": 0.0, "spec": "warmth=+1.00", "run": "runs/warmth+1.00"}
    assert (by["warmth=-1.00"]["warm_coef"], by["warmth=-1.00"]["cold_coef"]) == (0.0, 1.0)
    assert by["base"] == {"label": "base", "kind": "reference", "warmth": None, "warm_coef": None, "cold_coef": None,
                          "spec": "base", "run": "runs/ref-base"}
    cfg = sweep["config"]
    assert (cfg["units"], cfg["per_item"], cfg["dtype"], cfg["mode"]) == ("dial", 4, "float32", "likelihood")
    assert cfg["vectors"]["warm"]["layers"] == [1] and cfg["vectors"]["cold"]["calibration"]["coef"] == [0.0, 1.0]
    assert len(sweep["sessions"]) == 1 and sweep["sessions"][0]["prompts"] == 4 * 20
    assert set(sweep["sessions"][0]) >= {"started", "seconds", "prompts"}

    records = {label: {r["prompt_id"]: r for r in _lines(out / p["run"] / "results.jsonl")} for label, p in by.items()}
    ids = set(records["base"])
    assert len(ids) == 3 * 4 + 2 * 4 and all(set(r) == ids for r in records.values())  # paired, 4 per item
    per_item = Counter(r["item_id"] for r in records["base"].values())
    assert len(per_item) == 5 and set(per_item.values()) == {4}
    fields = ("lp_correct", "lp_wrong", "verdict", "is_incorrect", "prompt")
    for pid in ids:  # warmth 0 is the base model, bit for bit
        assert [records["warmth=+0.00"][pid][f] for f in fields] == [records["base"][pid][f] for f in fields]
    for label in ("warmth=+1.00", "warmth=-1.00"):
        assert all(records[label][pid]["lp_correct"] != records["base"][pid]["lp_correct"] for pid in ids)
    run = json.loads((out / "runs" / "warmth+1.00" / "run.json").read_text())
    assert run["config"]["target"]["warm_coef"] == 1.5 and run["config"]["per_item"] == 4
    assert run["config"]["target"]["warm_vector_id"] == cfg["vectors"]["warm"]["id"]

    meter = {r["label"]: r for r in _lines(out / METER_JSONL)}
    assert set(meter) == set(by) and all(r["n"] == 4 for r in meter.values())
    assert meter["warmth=+0.00"]["p_warm"] == meter["base"]["p_warm"]
    assert meter["warmth=+0.00"]["nll"] == meter["base"]["nll"]
    assert meter["warmth=+1.00"]["nll"] != meter["base"]["nll"]  # steering changed the greedy answers
    assert {r.point.label: r.error_rate for r in res.points} == {
        label: sum(r["is_incorrect"] for r in recs.values()) / len(recs) for label, recs in records.items()}

    # a rerun with the same settings scores nothing, loads nothing, adds no meter line and no session
    sizes = {p["run"]: (out / p["run"] / "results.jsonl").stat().st_size for p in sweep["points"]}
    again = run_sweep(_sweep_cfg(out, tiny_folder, tiny_items, dial_dir), progress=False, meter=word_meter)
    assert again.scored_now == 0 and all(r.skipped for r in again.points) and len(loads) == 2
    assert {p: (out / p / "results.jsonl").stat().st_size for p in sizes} == sizes
    assert len(_lines(out / METER_JSONL)) == 4
    assert json.loads((out / "sweep.json").read_text())["sessions"] == sweep["sessions"]

    with pytest.raises(SettingsMismatchError, match="'seed'"):
        run_sweep(_sweep_cfg(out, tiny_folder, tiny_items, dial_dir, seed=1), progress=False, meter=word_meter)
    with pytest.raises(SettingsMismatchError, match="'vectors'"):
        run_sweep(_sweep_cfg(out, tiny_folder, tiny_items, dial_dir, layers=[2]), progress=False, meter=word_meter)

    # a point added later joins the folder; the others stay listed and untouched
    more = run_sweep(_sweep_cfg(out, tiny_folder, tiny_items, dial_dir, warmths=[0.5], references=[]),
                     progress=False, meter=word_meter)
    assert [r.point.label for r in more.points] == ["warmth=+0.00", "warmth=+0.50"]
    assert [r.skipped for r in more.points] == [True, False] and more.scored_now == 20
    labels = [p["label"] for p in json.loads((out / "sweep.json").read_text())["points"]]
    assert labels == ["warmth=-1.00", "warmth=+0.00", "warmth=+0.50", "warmth=+1.00", "base"]

    _check_report(out, labels)


def _check_report(out: Path, labels: list[str]) -> None:
    """The report, its plots, and its error rates equal to those recomputed from each point's results.jsonl."""
    from steerwarm.sweep.effects import ALL
    from steerwarm.sweep.report import write_sweep_report

    paths = write_sweep_report(out)
    md = next(p for p in paths.values() if p.name == "report.md")
    assert md.parent == out / "report" and md.is_file() and "warmth" in md.read_text()
    pngs = [p for p in paths.values() if p.suffix == ".png"]
    assert len(pngs) >= 4 and all(p.is_file() and p.stat().st_size > 1000 for p in pngs)  # with meter.jsonl
    report = json.loads(next(p for p in paths.values() if p.name == "report.json").read_text())
    assert [p["label"] for p in report["points"]] == labels
    sweep = json.loads((out / "sweep.json").read_text())
    checked = 0
    for point in sweep["points"]:
        recs = _lines(out / point["run"] / "results.jsonl")
        for scope in [*sorted({r["task"] for r in recs}), ALL]:
            for belief, rows in _belief_rows([r for r in recs if scope in (ALL, r["task"])]).items():
                cell = report["errors"][scope][point["label"]][belief]
                errors = sum(int(r["is_incorrect"]) for r in rows)
                assert (cell["n_scored"], cell["errors"]) == (len(rows), errors), (point["label"], scope, belief)
                if rows:
                    assert cell["error_rate"] == pytest.approx(errors / len(rows))
                checked += 1
    assert checked == len(labels) * 3 * 2


def _belief_rows(recs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """summary.py's belief levels: none = original (+ original_neutral without context); stated = both beliefs."""
    none = [r for r in recs if r["template"] == "original" or
            (r["template"] == "original_neutral" and r["condition"] == "unmodified")]
    return {"none": none, "stated": [r for r in recs if r["template"] in ("incorrect", "correct")]}


# -- the CLI ----------------------------------------------------------------------------------------------------------
def test_cli_sweep_and_input_errors(tiny_folder: Path, tiny_items: dict[str, Path], dial_dir: Path,
                                    tmp_path: Path) -> None:
    runner = CliRunner()
    common = ["--model", str(tiny_folder), "--vectors", str(dial_dir), "--tasks", "trivia", "--items",
              str(tiny_items["trivia"]), "--limit", "1", "--templates", "original", "--no-progress",
              "--meter-prompts", "0"]
    ok = runner.invoke(app, ["sweep", "run", "--warmth=-1:1:1", "--out", str(tmp_path / "s"), *common])
    assert ok.exit_code == 0, ok.output
    assert "3 points x 9 prompts" in ok.output and "warmth=-1.00: 9 prompts" in ok.output
    sweep = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert [p["warmth"] for p in sweep["points"]] == [-1.0, 0.0, 1.0] and sweep["config"]["meter_prompts"] == 0
    again = runner.invoke(app, ["sweep", "run", "--warmth", "-1,1", "--out", str(tmp_path / "s"), *common])
    assert again.exit_code == 0 and "0 scored now" in again.output and "skipped" in again.output
    changed = runner.invoke(app, ["sweep", "run", "--warmth", "1", "--out", str(tmp_path / "s"), *common,
                                  "--seed", "3"])
    assert changed.exit_code == 2 and "'seed'" in changed.output
    for args, msg in [(["--warmth", "0:1"], "START:STOP:STEP"), (["--warmth", "9"], "within"),
                      (["--warmth", "1", "--vectors", str(tmp_path / "none")], "no warm.safetensors"),
                      (["--warmth", "1", "--tasks", "poetry"], "unknown task"),
                      (["--warmth", "1", "--reference", "finetune=hot"], "warm or cold"),
                      (["--warmth", "1", "--layers", "x"], "layer numbers")]:
        argv = ["sweep", "run", "--out", str(tmp_path / "bad"), *common, *args]
        bad = runner.invoke(app, argv)
        assert bad.exit_code == 2 and msg in bad.output, (args, bad.output)
    missing = runner.invoke(app, ["sweep", "run", "--out", str(tmp_path / "bad")])
    assert missing.exit_code == 2 and "--warmth" in missing.output
    no_sweep = runner.invoke(app, ["sweep", "report", str(tmp_path)])
    assert no_sweep.exit_code == 2 and "no sweep.json" in no_sweep.output


def test_uncalibrated_vector_sweeps_raw_coefficients_in_generate_mode(
        tiny_folder: Path, tiny_items: dict[str, Path], btiny: LoadedModel, tmp_path: Path) -> None:
    path = random_vector(btiny, [0, 1, 2], seed=7, name="raw").save(tmp_path / "raw.safetensors")
    res = run_sweep(SweepConfig(warmths=[-0.5, 0.5], out=tmp_path / "s", tasks=["trivia"], vector=path,
                                layers=[2], items={"trivia": tiny_items["trivia"]}, limit=1, mode="generate",
                                gen=GenSettings(max_tokens=4), templates=["original", "incorrect"],
                                conditions=["unmodified"], model=str(tiny_folder), meter_prompts=0), progress=False)
    sweep = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert sweep["config"]["units"] == "raw" and sweep["config"]["layers"] == [2]
    assert sweep["config"]["vectors"]["warm"]["layers"] == [2]
    assert sweep["config"]["generation"] == {"max_tokens": 4, "temperature": 0.8, "top_p": 1.0}
    assert [(p["warm_coef"], p["cold_coef"]) for p in sweep["points"]] == [(-0.5, None), (0.0, None), (0.5, None)]
    assert res.prompts_per_point == 2 and not (tmp_path / "s" / METER_JSONL).exists()
    outputs = [{r["prompt_id"]: r["output"] for r in _lines(tmp_path / "s" / p["run"] / "results.jsonl")}
               for p in sweep["points"]]
    assert all(set(o) == set(outputs[0]) and all(isinstance(t, str) for t in o.values()) for o in outputs)
    run = json.loads((tmp_path / "s" / "runs" / "warmth+0.50" / "run.json").read_text())
    assert run["config"]["target"]["units"] == "raw" and run["config"]["target"]["warm_layers"] == [2]


# -- resume after a real kill -----------------------------------------------------------------------------------------
def test_sweep_resumes_after_a_kill(tiny_folder: Path, tiny_items: dict[str, Path], dial_dir: Path,
                                    tmp_path: Path) -> None:
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "steerwarm.cli", "sweep", "run", "--warmth", "0", "--out", str(out), "--model",
           str(tiny_folder), "--vectors", str(dial_dir), "--tasks", "trivia,medqa", "--per-item", "4",
           "--batch-size", "8", "--meter-prompts", "0", "--no-progress",
           *[x for t in ("trivia", "medqa") for x in ("--items", f"{t}={tiny_items[t]}")]]
    env = {**os.environ, KILL_ENV: "8", "HF_HUB_OFFLINE": "1"}
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert killed.returncode == -9, killed.stderr[-2000:]
    results = out / "runs" / "warmth+0.00" / "results.jsonl"
    assert not results.read_text().endswith("\n")  # killed half way through writing the 8th record
    assert len(read_records(results)) == 7
    env.pop(KILL_ENV)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "13 scored now" in done.stdout
    rows = _lines(results)
    assert len(rows) == 20 and len({r["prompt_id"] for r in rows}) == 20
    sessions = json.loads((out / "sweep.json").read_text())["sessions"]
    assert [s["prompts"] for s in sessions] == [13]  # the killed session could not record itself
