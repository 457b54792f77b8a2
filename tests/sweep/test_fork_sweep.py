"""Forked sweeps (`sweep.fork`, `SweepConfig.fork`) on the tiny model: each batch is scored once for all dial points,
and every point's run folder equals what a separate (`fork=False`) run writes: the same records in the same order
(scores equal to 1e-5, verdicts identical; tests/targets/test_fork.py argues the tolerance), the same run.json
target and a summary; also after a real kill mid-write and a resume, when the points stopped at different places;
and a failing point stops the others cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import steerwarm.targets.likelihood as lk
from steerwarm.model.load import LoadedModel
from steerwarm.records import KILL_ENV, read_records
from steerwarm.sweep.fork import Lockstep, LockstepAborted, run_lockstep
from steerwarm.sweep.run import SweepConfig, run_sweep
from tests.sweep.conftest import write_dial

ROOT = Path(__file__).resolve().parents[2]
WARMTHS = [-1.0, -0.5, 0.0, 0.5, 1.0]
SCORES = ("lp_correct", "lp_wrong", "lp_correct_sum", "lp_wrong_sum")
TOL = 1e-5


@pytest.fixture()
def fork_dial(tmp_path: Path, btiny: LoadedModel) -> Path:
    """Warm vector at layer 1, cold at layer 2 (the shipped dial is 15 and 18 of 30): the fork is at layer 1."""
    return write_dial(tmp_path / "vectors", btiny, cold_layer=2, cold_coef=1.5)


def config(out: Path, tiny_folder: Path, items: dict[str, Path], vdir: Path, **kw: Any) -> SweepConfig:
    base: dict[str, Any] = {"warmths": WARMTHS, "out": out, "tasks": ["trivia", "medqa"],
                            "items": {t: items[t] for t in ("trivia", "medqa")}, "per_item": 4,
                            "model": str(tiny_folder), "vectors": vdir, "batch_size": 8, "meter_prompts": 0}
    return SweepConfig(**{**base, **kw})


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_same_folders(a: Path, b: Path, warmths: list[float] = WARMTHS) -> None:
    """Every dial point's records in `a` equal those in `b`, in the same order (scores to TOL, everything else
    exactly but the time), with the same run.json and summary."""
    for w in warmths:
        run = f"runs/warmth{w:+.2f}"
        ra, rb = lines(a / run / "results.jsonl"), lines(b / run / "results.jsonl")
        assert [r["prompt_id"] for r in ra] == [r["prompt_id"] for r in rb] and len(ra) == 20
        for x, y in zip(ra, rb, strict=True):
            assert {k: v for k, v in x.items() if k not in (*SCORES, "time")} == \
                   {k: v for k, v in y.items() if k not in (*SCORES, "time")}
            assert all(abs(x[k] - y[k]) <= TOL for k in SCORES)
        ja, jb = (json.loads((f / run / "run.json").read_text())["config"] for f in (a, b))
        assert ja == jb
        sa, sb = (json.loads((f / run / "summary.json").read_text())["run"] for f in (a, b))
        assert (sa["n_scored"], sa["error_rate"]) == (sb["n_scored"], sb["error_rate"])


def test_forked_sweep_equals_separate_points(tiny_folder: Path, tiny_items: dict[str, Path], fork_dial: Path,
                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    passes: list[int] = []
    real = lk.score_pairs_forked

    def spy(loaded: LoadedModel, users: Any, pairs: Any, n_streams: int, *args: Any) -> Any:
        passes.append(n_streams)
        return real(loaded, users, pairs, n_streams, *args)

    monkeypatch.setattr(lk, "score_pairs_forked", spy)
    forked = run_sweep(config(tmp_path / "forked", tiny_folder, tiny_items, fork_dial), progress=False)
    assert passes == [5, 5, 5]  # 20 prompts in batches of 8: each batch once, for all five points
    # (warm values fork at layer 1, cold values and 0 at layer 2: tests/targets/test_fork.py checks the plan)
    separate = run_sweep(config(tmp_path / "separate", tiny_folder, tiny_items, fork_dial, fork=False),
                         progress=False)
    assert len(passes) == 3  # the separate path never forks
    assert forked.scored_now == separate.scored_now == 5 * 20
    assert_same_folders(tmp_path / "forked", tmp_path / "separate")
    rates = {r.point.label: r.error_rate for r in forked.points}
    assert rates == {r.point.label: r.error_rate for r in separate.points}
    recs = {w: lines(tmp_path / "forked" / f"runs/warmth{w:+.2f}" / "results.jsonl") for w in WARMTHS}
    assert len({round(sum(r["lp_correct"] for r in recs[w]), 6) for w in WARMTHS}) == 5  # the points differ
    # a rerun scores nothing; adding a point scores only that one (no fork for a single point)
    again = run_sweep(config(tmp_path / "forked", tiny_folder, tiny_items, fork_dial), progress=False)
    assert again.scored_now == 0 and all(r.skipped for r in again.points)
    more = run_sweep(config(tmp_path / "forked", tiny_folder, tiny_items, fork_dial, warmths=[0.25]),
                     progress=False)
    assert more.scored_now == 20 and len(passes) == 3


def test_killed_forked_sweep_resumes_to_the_separate_result(tiny_folder: Path, tiny_items: dict[str, Path],
                                                             fork_dial: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    warmths = [-1.0, 0.0, 1.0]
    cmd = [sys.executable, "-m", "steerwarm.cli", "sweep", "run", "--warmth", ",".join(map(str, warmths)), "--out",
           str(out), "--model", str(tiny_folder), "--vectors", str(fork_dial), "--tasks", "trivia,medqa",
           "--per-item", "4", "--batch-size", "8", "--meter-prompts", "0", "--no-progress",
           *[x for t in ("trivia", "medqa") for x in ("--items", f"{t}={tiny_items[t]}")]]
    # batch 1 (8 prompts) for all three points is 24 records; the 36th is half way through batch 2 of a point after
    # the first (the workers append concurrently, so another may be cut in the same batch too)
    env = {**os.environ, KILL_ENV: "36", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert killed.returncode == -9, killed.stderr[-2000:]
    held = sorted(len(read_records(out / f"runs/warmth{w:+.2f}" / "results.jsonl")) for w in warmths)
    assert held[0] < 16 and held[-1] == 16  # the points stopped at different places, some mid-batch
    env.pop(KILL_ENV)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    separate = tmp_path / "separate"
    no_fork = subprocess.run([*cmd[:cmd.index("--out") + 1], str(separate), *cmd[cmd.index("--out") + 2:],
                              "--no-fork"], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert no_fork.returncode == 0, no_fork.stderr[-2000:]
    sessions = [json.loads((d / "sweep.json").read_text())["sessions"] for d in (out, separate)]
    assert [s["forked"] for s in sessions[0]] == [[f"warmth={w:+.2f}" for w in warmths]]
    assert [s["forked"] for s in sessions[1]] == [[]]
    # the point cut mid-batch resumes with its batches cut elsewhere: the lockstep scores them in other
    # compositions (equal to float rounding), the records land in the same order
    assert_same_folders(out, separate, warmths)


def test_lockstep_serves_each_batch_once_and_stops_on_a_failure() -> None:
    calls: list[tuple[list[str], list[str]]] = []

    def score(keys: Any, labels: Any) -> dict[str, list[str]]:
        calls.append(([k[0] for k in keys], list(labels)))
        return {label: [f"{label}:{k[0]}" for k in keys] for label in labels}

    def key(u: str) -> tuple[str, tuple[str, str]]:
        return (u, ("a", "b"))

    # point b already holds "x": it asks for "y" only, a asks for "x" then "y": "x" is scored for a alone, "y" once
    lock: Lockstep[str] = Lockstep({"a": {key("x"), key("y")}, "b": {key("y")}}, score)
    got = run_lockstep({"a": lambda: [lock.ask("a", [key("x")]), lock.ask("a", [key("y")])],
                        "b": lambda: [lock.ask("b", [key("y")])]}, lock)
    assert got == {"a": [["a:x"], ["a:y"]], "b": [["b:y"]]}
    assert calls == [(["x"], ["a"]), (["y"], ["a", "b"])]

    def broken() -> list[str]:
        raise KeyError("bad point")

    lock = Lockstep({"a": {key("x")}, "b": {key("x")}}, score)
    with pytest.raises(KeyError, match="bad point"):
        run_lockstep({"a": lambda: lock.ask("a", [key("x")]), "b": broken}, lock)

    def failing(keys: Any, labels: Any) -> dict[str, list[str]]:
        raise RuntimeError("scorer broke")

    lock = Lockstep({"a": {key("x")}}, failing)
    aborted: list[BaseException] = []

    def asker() -> list[str]:
        try:
            got: list[str] = lock.ask("a", [key("x")])
            return got
        except LockstepAborted as exc:
            aborted.append(exc)
            raise

    with pytest.raises(RuntimeError, match="scorer broke"):
        run_lockstep({"a": asker}, lock)
    assert len(aborted) == 1
