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
    env = dict(os.environ, HF_HUB_OFFLINE="1", **(env or {}))
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    server = RunningServer(f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(server.base_url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start within {timeout}s:\n{log.read_text()}")
            time.sleep(0.3)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
