"""Endpoint sweeps against a fake OpenAI-compatible server on 127.0.0.1 (the tiny model renders prompts and meters):
every dial point is the endpoint with its warmth in the request body, the config records what is served (a rerun
at another URL resumes, another model is refused), and the options that only make sense locally are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from steerwarm.cli.app import app
from steerwarm.records import SettingsMismatchError
from steerwarm.sweep.run import SweepConfig, run_sweep
from tests.bench_fixtures import FakeState
from tests.sweep.test_run import dial_dir, word_meter  # noqa: F401 (dial_dir: a fixture)


def _cfg(out: Path, endpoint: str | None, tiny_folder: Path, items: dict[str, Path], **kw: Any) -> SweepConfig:
    base: dict[str, Any] = {"warmths": [-1.0, 1.0], "out": out, "tasks": ["trivia"],
                            "items": {"trivia": items["trivia"]}, "limit": 2, "per_item": 1,
                            "model": str(tiny_folder), "batch_size": 8,
                            "meter_prompts": 2, "meter_tokens": 4, "endpoint": endpoint}
    return SweepConfig(**{**base, **kw})


def test_endpoint_sweep_sends_each_points_warmth_and_resumes(fake_server: tuple[str, FakeState], tiny_folder: Path,
                                                             tiny_items: dict[str, Path], dial_dir: Path,  # noqa: F811
                                                             tmp_path: Path) -> None:
    url, state = fake_server
    out = tmp_path / "sweep"
    res = run_sweep(_cfg(out, f"{url}#fake-model", tiny_folder, tiny_items), progress=False, meter=word_meter)
    sweep = json.loads((out / "sweep.json").read_text())
    cfg = sweep["config"]
    assert cfg["units"] == "dial (endpoint)" and cfg["vectors"] is None and cfg["layers"] is None
    assert cfg["endpoint"] == {"url": url, "model": "fake-model", "fingerprint": None, "extra_body": {}}
    assert [(p["label"], p["warm_coef"], p["cold_coef"]) for p in sweep["points"]] == [
        ("warmth=-1.00", None, None), ("warmth=+0.00", None, None), ("warmth=+1.00", None, None)]
    n = res.prompts_per_point
    assert n == 2 and res.scored_now == 3 * n
    completions = [r for r in state.requests if r["path"] == "completions"]
    chats = [r for r in state.requests if r["path"] == "chat"]
    assert sorted(r["warmth"] for r in completions) == [-1.0] * 2 * n + [0.0] * 2 * n + [1.0] * 2 * n
    assert sorted(r["warmth"] for r in chats) == [-1.0, -1.0, 0.0, 0.0, 1.0, 1.0]  # the meter's answers
    assert all(r["model"] == "fake-model" for r in state.requests) and all(r["temperature"] == 0 for r in chats)
    assert all(r["max_tokens"] == 4 for r in chats)
    run = json.loads((out / "runs" / "warmth+1.00" / "run.json").read_text())["config"]["target"]
    assert run == {"spec": "warmth=+1.00", "kind": "endpoint-dial", "units": "dial (endpoint)", "warmth": 1.0,
                   "model": "fake-model", "fingerprint": None, "extra_body": {"warmth": 1.0},
                   "tokenizer": str(tiny_folder)}
    meter = [json.loads(x) for x in (out / "meter.jsonl").read_text().splitlines()]
    assert [m["label"] for m in meter] == ["warmth=-1.00", "warmth=+0.00", "warmth=+1.00"]
    # the same server under another host name: what is served did not change, so it resumes with nothing to do
    state.requests.clear()
    same = url.replace("127.0.0.1", "localhost")
    again = run_sweep(_cfg(out, f"{same}#fake-model", tiny_folder, tiny_items), progress=False, meter=word_meter)
    assert again.scored_now == 0 and all(p.skipped for p in again.points) and state.requests == []
    with pytest.raises(SettingsMismatchError, match="'endpoint'"):
        run_sweep(_cfg(out, f"{url}#other-model", tiny_folder, tiny_items), progress=False, meter=word_meter)
    with pytest.raises(SettingsMismatchError, match="'endpoint'"):
        run_sweep(_cfg(out, f"{url}#fake-model", tiny_folder, tiny_items, extra_body={"top_k": 2}),
                  progress=False, meter=word_meter)
    with pytest.raises(SettingsMismatchError, match="'units'"):  # the same folder, steered locally
        run_sweep(_cfg(out, None, tiny_folder, tiny_items, vectors=dial_dir), progress=False)


def test_endpoint_sweep_refuses_local_dial_options(tiny_folder: Path, tiny_items: dict[str, Path],
                                                   tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/v1#m"
    cases: list[tuple[dict[str, Any], str]] = [
                    ({"vectors": tmp_path}, "--vectors cannot be combined with --endpoint"),
                    ({"layers": [1]}, "--layers cannot be combined"),
                    ({"vector": tmp_path / "v.safetensors"}, "--vector cannot be combined"),
                    ({"endpoint": url + "@warmth=1"}, "without '@warmth=W'"),
                    ({"endpoint": url + "@warmth=x"}, "is not a number"),
                    ({"extra_body": {"warmth": 1}}, "--extra-body sets \"warmth\"")]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg):
            _cfg(tmp_path / "s", kw.pop("endpoint", url), tiny_folder, tiny_items, **kw)
    runner = CliRunner()
    common = ["sweep", "run", "--warmth", "1", "--out", str(tmp_path / "s"), "--endpoint", url, "--model",
              str(tiny_folder), "--no-progress"]
    for args, msg in [(["--vectors", str(tmp_path)], "cannot be combined with --endpoint"),
                      (["--extra-body", '{"warmth": 0.5}'], "sends itself"),
                      (["--warmth", "9"], "within")]:
        bad = runner.invoke(app, [*common, *args])
        assert bad.exit_code == 2 and msg in bad.output, (args, bad.output)
