"""Start and stop a `vllm serve` process (with or without steerwarm's plugin) for tests and benchmarks.

Invariants:
- The server listens on 127.0.0.1 only and is started in its own process group, so `stop()` ends the API server,
  the engine core and its workers together (SIGTERM, then SIGKILL after a grace period).
- `plugin=False` sets `VLLM_PLUGINS` to an allowlist of every general plugin installed but steerwarm's (vLLM's own
  LoRA resolvers, ...), so vLLM runs exactly as without steerwarm installed; `plugin=True` loads them all, with
  `STEERWARM_VECTORS` set to the given folder.
- On the CPU build the environment gets the settings that make vLLM start on a small shared machine: a fixed KV
  cache (`VLLM_CPU_KVCACHE_SPACE`, GiB) instead of a share of all memory, no core reserved for the front end, and
  passive OpenMP waiting. A caller's own environment variables win.
- `start` returns only once `GET /v1/models` answers; if the process dies or the deadline passes first it raises
  with the tail of the server's log, and the process is stopped.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "OMP_WAIT_POLICY": "PASSIVE"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def vllm_cli(python: str | Path | None = None) -> list[str]:
    """The command that runs vLLM's CLI with `python` (default: this interpreter)."""
    return [str(python or sys.executable), "-m", "vllm.entrypoints.cli.main"]


def others_plugins() -> list[str]:
    """The vLLM general plugins installed here other than steerwarm's (what `plugin=False` still loads)."""
    from importlib.metadata import entry_points

    return sorted({e.name for e in entry_points(group="vllm.general_plugins")} - {"steerwarm"})


@dataclass
class VllmProcess:
    process: subprocess.Popen[bytes]
    port: int
    served_name: str
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def alive(self) -> bool:
        return self.process.poll() is None

    def pause(self) -> None:
        """Freeze every process of the server (SIGSTOP), so an idle server takes no CPU from a measured one."""
        if self.alive():
            os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self, grace: float = 20.0) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGCONT)  # a paused server must be able to handle its SIGTERM
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(grace)
        except ProcessLookupError:
            pass

    def __enter__(self) -> VllmProcess:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def start_vllm(model: str | Path, *, log_path: Path, served_name: str = "smollm2-135m", plugin: bool = True,
               vectors: str | Path | None = None, dtype: str = "float32", args: Sequence[str] = (),
               env: Mapping[str, str] | None = None, port: int | None = None, python: str | Path | None = None,
               timeout: float = 600.0, cpu: bool = True, eager: bool | None = None) -> VllmProcess:
    """Start `vllm serve MODEL` and wait until it answers (see the module invariants). `eager` (default: on the CPU)
    turns torch.compile and CUDA graphs off."""
    port = port or free_port()
    full_env = dict(os.environ)
    if cpu:
        full_env.update({k: v for k, v in CPU_ENV.items() if k not in os.environ})
    full_env["HF_HUB_OFFLINE"] = "1"
    if plugin:
        full_env.pop("VLLM_PLUGINS", None)
        if vectors is not None:
            full_env["STEERWARM_VECTORS"] = str(vectors)
    else:
        full_env["VLLM_PLUGINS"] = ",".join(others_plugins())  # "" is an allowlist that names nothing
        full_env.pop("STEERWARM_VECTORS", None)
    full_env.update(env or {})
    cmd = [*vllm_cli(python), "serve", str(model), "--served-model-name", served_name, "--host", "127.0.0.1",
           "--port", str(port), "--dtype", dtype, *(["--enforce-eager"] if (cpu if eager is None else eager) else []),
           *args]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True)
    server = VllmProcess(proc, port, served_name, log_path)
    deadline = time.monotonic() + timeout
    while True:
        if not server.alive():
            raise RuntimeError(f"vllm serve exited with {proc.returncode} before it was ready:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.base_url}/models", timeout=2) as r:
                if r.status == 200:
                    return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"vllm serve was not ready after {timeout:.0f}s:\n{server.log_tail()}")
        time.sleep(1.0)
