"""Runs end to end on the tiny model saved as a checkpoint folder: results and summary, resume after a real kill
(nothing lost, nothing duplicated, same scores), refused configuration changes, generate mode, the warmth target,
and the results store's torn-line repair."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from steerwarm.bench.errors import DataFileError
from steerwarm.bench.runner import RunConfig, run_benchmark
from steerwarm.bench.store import RunStore
from steerwarm.cli.app import app
from steerwarm.model.load import LoadedModel
from steerwarm.paths import default_contexts, display
from steerwarm.records import KILL_ENV, DamagedLogError, SettingsMismatchError, read_records
from steerwarm.steer.vector import Calibration
from steerwarm.targets.registry import GenSettings, LocalTarget, parse_target
from tests.conftest import random_vector

ROOT = Path(__file__).resolve().parents[2]
TASKS = ["trivia", "truthfulqa", "disinfo", "medqa"]
N_PROMPTS = (3 + 2 + 2 + 2) * 28


def _cfg(out: Path, items: dict[str, Path], **kw: object) -> RunConfig:
    return RunConfig(tasks=TASKS, out=out, items=items, batch_size=16, **kw)  # type: ignore[arg-type]


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_run_writes_results_and_summary(tiny_folder: Path, tiny_items: dict[str, Path], tmp_path: Path) -> None:
    target = parse_target(str(tiny_folder))
    res = run_benchmark(_cfg(tmp_path / "run", tiny_items), target, progress=False)
    assert res.total == N_PROMPTS == res.scored_now
    rows = _lines(tmp_path / "run" / "results.jsonl")
    assert len(rows) == N_PROMPTS and len({r["prompt_id"] for r in rows}) == N_PROMPTS
    assert {r["verdict"] for r in rows} <= {"correct", "incorrect"} and all(r["scorer"] == "likelihood" for r in rows)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    errors = sum(int(r["is_incorrect"]) for r in rows if r["task"] == "trivia")  # type: ignore[call-overload]
    trivia_all = summary["tasks"]["trivia"]["all"]
    assert (trivia_all["n_scored"], trivia_all["errors"]) == (84, errors)
    cell = next(c for c in summary["cells"] if (c["task"], c["condition"], c["belief"]) == ("medqa", "unmodified",
                                                                                             "none"))
    assert cell["n"] == 4  # original + original_neutral for 2 items
    t = res.throughput
    assert t["raw_forward_prompts_per_s"] > 0 and 0 < t["efficiency_same_batches"]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["config"]["target"]["kind"] == "folder" and len(run["sessions"]) == 1
    again = run_benchmark(_cfg(tmp_path / "run", tiny_items), target, progress=False)
    assert again.scored_now == 0 and len(_lines(tmp_path / "run" / "results.jsonl")) == N_PROMPTS
    with pytest.raises(SettingsMismatchError, match="'seed'"):
        run_benchmark(_cfg(tmp_path / "run", tiny_items, seed=1), target, progress=False)
    with pytest.raises(SettingsMismatchError, match="'mode'"):
        run_benchmark(_cfg(tmp_path / "run", tiny_items, mode="generate"), target, progress=False)


def test_resume_after_a_kill_loses_and_duplicates_nothing(tiny_folder: Path, tiny_items: dict[str, Path],
                                                          tmp_path: Path) -> None:
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "steerwarm.cli", "bench", "run", "--target", str(tiny_folder), "--out", str(out),
           "--tasks", ",".join(TASKS), "--batch-size", "16", "--no-progress",
           *[x for t, p in tiny_items.items() for x in ("--items", f"{t}={p}")]]
    env = {**os.environ, KILL_ENV: "40", "HF_HUB_OFFLINE": "1"}
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert killed.returncode == -9, killed.stderr[-2000:]
    text = (out / "results.jsonl").read_text()
    assert text.count("\n") == 39 and not text.endswith("\n")  # killed half way through writing the 40th record
    assert len(read_records(out / "results.jsonl")) == 39
    env.pop(KILL_ENV)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "39 already done" in done.stdout
    rows = _lines(out / "results.jsonl")
    assert len(rows) == N_PROMPTS and len({r["prompt_id"] for r in rows}) == N_PROMPTS
    clean = run_benchmark(_cfg(tmp_path / "clean", tiny_items), parse_target(str(tiny_folder)), progress=False)
    assert clean.total == N_PROMPTS
    ref = {r["prompt_id"]: r for r in _lines(tmp_path / "clean" / "results.jsonl")}
    for r in rows:
        c = ref[r["prompt_id"]]
        assert r["verdict"] == c["verdict"]
        assert r["lp_correct"] == pytest.approx(c["lp_correct"], abs=1e-4)
        assert r["lp_wrong"] == pytest.approx(c["lp_wrong"], abs=1e-4)
    sessions = json.loads((out / "run.json").read_text())["sessions"]
    assert [s["prompts"] for s in sessions] == [N_PROMPTS - 39]  # the killed session could not record itself


def test_generate_mode_with_the_matcher(tiny_folder: Path, tiny_items: dict[str, Path], tmp_path: Path) -> None:
    cfg = RunConfig(tasks=["trivia"], out=tmp_path / "gen", items={"trivia": tiny_items["trivia"]}, mode="generate",
                    limit=1, templates=["original", "incorrect"], conditions=["unmodified", "emotion:sad"],
                    gen=GenSettings(max_tokens=6), batch_size=4)
    res = run_benchmark(cfg, parse_target(str(tiny_folder)), progress=False)
    rows = _lines(tmp_path / "gen" / "results.jsonl")
    assert res.total == 4 and len(rows) == 4
    assert all(isinstance(r["output"], str) and r["scorer"] in ("matcher", "refusal-list") for r in rows)
    run = json.loads((tmp_path / "gen" / "run.json").read_text())
    assert run["config"]["generation"] == {"max_tokens": 6, "temperature": 0.8, "top_p": 1.0}


def test_warmth_target_steers_and_warmth_zero_is_base(tiny_folder: Path, tiny_items: dict[str, Path],
                                                      tmp_path: Path, btiny: LoadedModel) -> None:
    vdir = tmp_path / "vectors"
    warm = random_vector(btiny, [1], seed=5, name="warm")
    warm.calibration = Calibration(dial=[0.0, 1.0], coef=[0.0, 1.5])
    warm.save(vdir / "warm.safetensors")
    kw = {"model": str(tiny_folder), "vectors_dir": vdir}
    scores = {}
    for spec in ("base", "warmth=0", "warmth=1"):
        target = parse_target(spec, **kw)  # type: ignore[arg-type]
        assert isinstance(target, LocalTarget)
        cfg = RunConfig(tasks=["trivia"], out=tmp_path / spec, items={"trivia": tiny_items["trivia"]},
                        templates=["original"], conditions=["unmodified"])
        run_benchmark(cfg, target, progress=False)
        scores[spec] = {r["prompt_id"]: r["lp_correct"] for r in _lines(tmp_path / spec / "results.jsonl")}
    assert scores["warmth=0"] == scores["base"]
    assert all(abs(scores["warmth=1"][k] - v) > 1e-4 for k, v in scores["base"].items())
    desc = parse_target("warmth=1", **kw).describe()  # type: ignore[arg-type]
    assert desc["warm_coef"] == 1.5 and desc["kind"] == "steered"
    with pytest.raises(ValueError, match="within"):
        parse_target("warmth=9", **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown target"):
        parse_target("nonsense")


def test_store_repairs_a_torn_line_and_rejects_damage(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.append([{"prompt_id": "a", "x": 1}, {"prompt_id": "b", "x": 2}])
    with store.results.open("a") as fh:
        fh.write('{"prompt_id": "c"')
    assert set(store.load()) == {"a", "b"}
    assert store.results.read_text().count("\n") == 2 and not store.results.read_text().endswith("\n")
    store.load(repair=True)
    assert store.results.read_text().endswith("\n")
    store.append([{"prompt_id": "a", "x": 9}])  # a duplicate: the first record wins
    assert store.load()["a"]["x"] == 1
    store.results.write_text('{"prompt_id": "a"}\nnot json\n{"prompt_id": "b"}\n')
    with pytest.raises(DamagedLogError, match=r"results.jsonl:2: not a JSON object"):
        store.load()
    store.results.write_text('{"prompt_id": "a"}\n{"x": 1}\n{"prompt_id": "b"}\n')
    with pytest.raises(DataFileError, match=r"results.jsonl:2: field 'prompt_id'"):
        store.load()


def test_cli_run_and_errors(tiny_folder: Path, tiny_items: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["bench", "run", "--target", str(tiny_folder), "--out", str(tmp_path / "r"), "--tasks",
                             "trivia", "--items", str(tiny_items["trivia"]), "--no-progress", "--templates",
                             "original", "--conditions", "unmodified,stake:high"])
    assert ok.exit_code == 0, ok.output
    assert "6 prompts" in ok.output and "trivia" in ok.output
    bad = runner.invoke(app, ["bench", "run", "--target", "base", "--out", str(tmp_path / "x"), "--tasks",
                              "trivia,disinfo", "--items", str(tiny_items["trivia"])])
    assert bad.exit_code == 2 and "TASK=FILE" in bad.output
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "q", "correct_answer": "a"}\n')
    bad = runner.invoke(app, ["bench", "run", "--target", str(tiny_folder), "--out", str(tmp_path / "y"),
                              "--tasks", "trivia", "--items", str(broken), "--no-progress"])
    assert bad.exit_code == 2 and "broken.jsonl:1:" in bad.output and "incorrect_answer" in bad.output
    bad = runner.invoke(app, ["bench", "run", "--target", "http://127.0.0.1:9/v1#m", "--out", str(tmp_path / "z"),
                              "--extra-body", "[1]"])
    assert bad.exit_code == 2 and "JSON object" in bad.output
    shown = runner.invoke(app, ["bench", "prompts", "--task", "trivia", "--limit", "1"])
    assert shown.exit_code == 0 and shown.output.count("[trivia:sw-001|") == 28


def test_run_json_names_no_machine_path_and_an_older_absolute_one_resumes(
        tiny_folder: Path, tiny_items: dict[str, Path], tmp_path: Path) -> None:
    """run.json writes paths through paths.display; a folder an older version made with absolute paths resumes
    (its paths are rewritten to that form, so both sides of the settings check are written alike)."""
    cfg = _cfg(tmp_path / "run", tiny_items, limit=1)
    target = parse_target(str(tiny_folder))
    run_benchmark(cfg, target, progress=False)
    run_json = tmp_path / "run" / "run.json"
    run = json.loads(run_json.read_text())
    config = run["config"]
    written = [config["target"]["path"], config["contexts"]["path"], *(d["path"] for d in config["items"].values())]
    assert written[0] == display(tiny_folder) and not any(Path(p).is_absolute() for p in written)
    config["target"]["path"] = str(tiny_folder)  # as the older version wrote them
    config["contexts"]["path"] = str(default_contexts().resolve())
    for task, desc in config["items"].items():
        desc["path"] = str(tiny_items[task])
    run_json.write_text(json.dumps(run))
    again = run_benchmark(cfg, target, progress=False)
    assert again.scored_now == 0
    assert json.loads(run_json.read_text())["config"]["target"]["path"] == display(tiny_folder)
