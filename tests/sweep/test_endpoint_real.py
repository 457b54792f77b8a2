"""An endpoint sweep against a REAL `steerwarm serve` (the real default model, float32, the shipped dial in vectors/)
on a free 127.0.0.1 port, in likelihood mode: the warmth-0 and warmth-1 points served by the endpoint score what
the local `base` and `warmth=1` targets score (within 1e-4), every request carried its point's warmth in the body
(the server's `steering` block says so), and a rerun resumes without a single new request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from steerwarm.bench.runner import RunConfig, run_benchmark
from steerwarm.cli.app import app
from steerwarm.model.load import load
from steerwarm.paths import shipped_vectors
from steerwarm.steer.dial import Dial
from steerwarm.targets.endpoint import EndpointClient
from steerwarm.targets.registry import LocalTarget
from tests.serve.conftest import serve

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m"
SCORES = ("lp_correct", "lp_wrong", "lp_correct_sum", "lp_wrong_sum")


def _rows(run_dir: Path) -> dict[str, dict[str, Any]]:
    lines = (run_dir / "results.jsonl").read_text().splitlines()
    return {r["prompt_id"]: r for r in (json.loads(x) for x in lines if x.strip())}


def test_endpoint_sweep_matches_local_points_and_resumes(tiny_items: dict[str, Path], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, float | None]] = []  # (response kind, the steering block's warmth) of every response
    real_call = EndpointClient.call

    def spying_call(self: EndpointClient, fn: Any) -> Any:
        resp = real_call(self, fn)
        extra = getattr(resp, "model_extra", None) or {}
        if isinstance(extra.get("steering"), dict):
            seen.append((str(getattr(resp, "object", "")), extra["steering"]["warmth"]))
        return resp

    monkeypatch.setattr(EndpointClient, "call", spying_call)
    items = ["--tasks", "trivia", "--items", f"trivia={tiny_items['trivia']}", "--limit", "2", "--per-item", "1"]
    out = tmp_path / "sweep"
    with serve(["--threads", "1", "--max-batch", "8"], tmp_path / "server.log") as server:
        argv = ["sweep", "run", "--endpoint", f"{server.v1}#{MODEL}", "--warmth", "0,1", "--out", str(out),
                *items, "--meter-prompts", "2", "--meter-tokens", "8", "--batch-size", "4", "--concurrency", "2",
                "--threads", "1", "--no-progress"]
        first = CliRunner().invoke(app, argv)
        assert first.exit_code == 0, first.output
        assert "2 points x 2 prompts, 4 scored now" in first.output and "dial (endpoint)" in first.output
        # every response (2 points x 2 prompts x 2 replies echo-scored, 2 x 2 meter answers) reports its warmth
        assert sorted(seen) == sorted([("chat.completion", 0.0)] * 2 + [("chat.completion", 1.0)] * 2
                                      + [("text_completion", 0.0)] * 4 + [("text_completion", 1.0)] * 4)
        seen.clear()
        again = CliRunner().invoke(app, argv)
        assert again.exit_code == 0 and "0 scored now" in again.output and seen == [], again.output
    sweep = json.loads((out / "sweep.json").read_text())
    endpoint = sweep["config"]["endpoint"]
    loaded = load(MODEL)
    assert endpoint["model"] == MODEL and endpoint["fingerprint"] == loaded.fingerprint
    assert len(sweep["sessions"]) == 1 and len((out / "meter.jsonl").read_text().splitlines()) == 2

    dial = Dial.from_dir(shipped_vectors())
    for label, slug, target in [("base", "warmth+0.00", LocalTarget("base", loaded, "base")),
                                ("warmth=1", "warmth+1.00", LocalTarget("warmth=1", loaded, "steered", dial=dial,
                                                                        warmth=1.0))]:
        cfg = RunConfig(tasks=["trivia"], out=tmp_path / label, items={"trivia": tiny_items["trivia"]}, limit=2,
                        per_item=1, batch_size=4, yardstick_every=0)
        run_benchmark(cfg, target, progress=False)
        local, served = _rows(tmp_path / label), _rows(out / "runs" / slug)
        assert sorted(local) == sorted(served) and len(local) == 2
        for pid, row in local.items():
            for key in SCORES:
                assert served[pid][key] == pytest.approx(row[key], abs=1e-4), (label, pid, key)
            assert served[pid]["verdict"] == row["verdict"]
    base, warm = _rows(tmp_path / "base"), _rows(tmp_path / "warmth=1")
    assert any(abs(base[p]["lp_correct"] - warm[p]["lp_correct"]) > 1e-3 for p in base)  # warmth 1 steered
