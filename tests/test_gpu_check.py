"""scripts/gpu_check.py runs end to end on the CPU with its tiny config: a real subprocess run that prints the whole
table, writes parsable JSON with positive measurements, and finds every row of per-row steering equal to its
uniform batch in float32 on the CPU. Bad arguments exit with 2."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
KEYS = ["decode_b1", "decode_b32", "decode_b128", "mixed_uniform", "engine", "equality"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_tiny_run_prints_every_row_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    proc = _run("--device", "cpu", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    table = proc.stdout
    assert "tiny config" in table and "dtype: float32" in table and "total wall time:" in table
    for check in ("decode steered/unsteered, batch 1 ", "decode steered/unsteered, batch 32 ",
                  "decode steered/unsteered, batch 128 ", "mixed/uniform warmth, batch 128",
                  "engine, 64 concurrent requests", "greedy equality of per-row steering"):
        assert check in table, check
    report = json.loads(out.read_text())
    rows = {r["key"]: r for r in report["rows"]}
    assert list(rows) == KEYS
    for key in KEYS:
        value = rows[key]["value"]
        assert isinstance(value, float) and value > 0, (key, value)
    for key in ("decode_b1", "decode_b32", "decode_b128", "mixed_uniform"):
        assert rows[key]["unit"] == "ratio" and rows[key]["result"] in ("PASS", "FAIL")
    equality = rows["equality"]
    assert equality["value"] == equality["target"] == 8 and equality["result"] == "PASS"
    assert "8/8 rows" in table
    assert "TTFT p50" in rows["engine"]["detail"] and rows["engine"]["result"] == "info"
    assert report["header"]["device"].startswith("CPU") and report["wall_s"] > 0


@pytest.mark.parametrize("args", [["--rounds", "0"], ["--device", "tpu"], ["--dtype", "float8"], ["--nope"]])
def test_bad_arguments_exit_2(args: list[str], capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    # in-process: argument errors stop before any model is built, and a subprocess would spend its time importing
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", script)  # its dataclasses look their module up there
    spec.loader.exec_module(script)
    with pytest.raises(SystemExit) as exc:
        script.main(args)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err
