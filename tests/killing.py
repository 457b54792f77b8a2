"""Kill-mid-write tests for every resumable job: run a Python snippet in a subprocess that SIGKILLs itself half way
through writing its N-th record (`steerwarm.records` kill hook), then rerun it to the end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from steerwarm.records import KILL_ENV

ROOT = Path(__file__).resolve().parents[1]


def run_snippet(script: str, *args: str, kill_after: int | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `script` (argv[1:] = args) in a fresh interpreter, one torch thread, offline; with `kill_after` it must
    die by SIGKILL (returncode -9), otherwise it must succeed."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}", "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop(KILL_ENV, None)
    if kill_after is not None:
        env[KILL_ENV] = str(kill_after)
    proc = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    want = -9 if kill_after is not None else 0
    assert proc.returncode == want, f"exit {proc.returncode}, wanted {want}:\n{proc.stderr[-3000:]}"
    return proc


def torn(path: Path) -> bool:
    """The file ends in a torn line (what the kill hook leaves)."""
    data = path.read_bytes()
    return bool(data) and not data.endswith(b"\n")
