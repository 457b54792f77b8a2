"""Helpers for server tests: start `steerwarm serve` as a real uvicorn subprocess on a free port, and stop it.

The server is only ever bound to 127.0.0.1. Its output goes to a log file that a failing start-up prints.
In-process model work in these tests runs on one torch thread: on this 2-core machine, shared with the server
subprocess, spinning OpenMP threads made it up to ten times slower.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch


@dataclass(frozen=True)
class RunningServer:
    base_url: str  # http://127.0.0.1:PORT
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def v1(self) -> str:
        return self.base_url + "/v1"


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(args: list[str], log: Path, timeout: float = 240.0, *, module: str = "steerwarm.cli",
          env: dict[str, str] | None = None) -> Iterator[RunningServer]:
    """`python -m MODULE serve ARGS` (MODULE: the CLI, or a test wrapper of it such as tests.serve.slow_serve), with
    `env` added to the environment."""
    port = free_port()
    cmd = [sys.executable, "-m", module, "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    base = f"http://127.0.0.1:{port}"
    with running(cmd, log, base + "/health", "server", timeout, env=dict(os.environ, HF_HUB_OFFLINE="1",
                                                                          **(env or {}))) as proc:
        yield RunningServer(base, proc, log)


@contextmanager
def running(cmd: list[str], log: Path, ready_url: str, name: str, timeout: float, *,
            env: dict[str, str] | None = None, stop_timeout: float = 20.0) -> Iterator[subprocess.Popen[bytes]]:
    """Run `cmd` (output to `log`) until `ready_url` answers 200 (its log in the error when it exits or does not
    get ready within `timeout` s); terminate it (then kill it) when the block ends."""
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(ready_url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not get ready within {timeout}s:\n{log.read_text()}")
            time.sleep(0.3)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
