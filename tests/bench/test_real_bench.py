"""The benchmark on the real default model (slow): likelihood runs of base and of the warmth dial (the starter vector
calibrated as a stand-in warm vector), and a short generate run scored by the matcher."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from steerwarm.bench.runner import RunConfig, run_benchmark
from steerwarm.steer.vector import Calibration, SteeringVector
from steerwarm.targets.registry import GenSettings, parse_target

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
STARTER = ROOT / "vectors" / "starter-contrast.safetensors"
TASKS = ["trivia", "truthfulqa", "disinfo", "medqa"]


def _rows(run: Path) -> dict[str, dict[str, object]]:
    return {r["prompt_id"]: r for r in map(json.loads, (run / "results.jsonl").read_text().splitlines())}


def test_likelihood_base_and_warmth_dial(tmp_path: Path) -> None:
    vdir = tmp_path / "vectors"
    vdir.mkdir()
    vec = SteeringVector.load(STARTER)
    vec.calibration = Calibration(dial=[0.0, 1.0], coef=[0.0, 0.3])
    vec.save(vdir / "warm.safetensors")
    runs = {}
    for spec in ("base", "warmth=1"):  # warmth=0 == base is proven exactly on the tiny model
        cfg = RunConfig(tasks=TASKS, out=tmp_path / spec, limit=1, templates=["original", "incorrect"],
                        conditions=["unmodified", "emotion:sad"], batch_size=8, yardstick_every=1)
        res = run_benchmark(cfg, parse_target(spec, vectors_dir=vdir), progress=False)
        assert res.total == 4 * 1 * 4
        runs[spec] = _rows(tmp_path / spec)
    base, warm = runs["base"], runs["warmth=1"]
    assert all(warm[k]["lp_correct"] != base[k]["lp_correct"] for k in base)
    assert all(-30 < float(r["lp_correct"]) < 0 and r["n_tok_correct"] >= 2 for r in base.values())  # type: ignore
    summary = json.loads((tmp_path / "base" / "summary.json").read_text())
    assert set(summary["tasks"]) == set(TASKS)
    session = json.loads((tmp_path / "base" / "run.json").read_text())["sessions"][0]
    assert session["raw_forward_prompts_per_s"] > 0 and session["efficiency_same_batches"] > 0.2


def test_generate_on_the_real_model(tmp_path: Path) -> None:
    cfg = RunConfig(tasks=["trivia"], out=tmp_path / "gen", limit=1, mode="generate", templates=["original"],
                    conditions=["unmodified"], gen=GenSettings(max_tokens=16), batch_size=1)
    res = run_benchmark(cfg, parse_target("base"), progress=False)
    rows = _rows(tmp_path / "gen")
    assert res.total == 1 and all(len(str(r["output"])) > 0 and r["verdict"] in ("correct", "incorrect", "refusal")
                                  for r in rows.values())
    shutil.rmtree(tmp_path / "gen")
