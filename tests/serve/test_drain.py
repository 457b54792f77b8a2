"""Graceful drain, with a real SIGTERM to a real `steerwarm serve` subprocess on the tiny model.

The server's engine steps are slowed (tests/serve/slow_serve.py: 30 ms a step, a stand-in for a larger model) so
that requests are still running when the signal arrives, and it drains for 3 s (`--drain-seconds 3`). At the signal
three requests are in flight: a short chat stream, which finishes normally during the drain; a long completion stream,
cut at the deadline with a final `server_shutting_down` error event and `[DONE]`; and a long non-streamed completion,
answered 503 with an OpenAI error object. During the drain a new connection is refused, while the process still
runs. The process exits 0 (clean for systemd) soon after the deadline.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import httpx
from openai import OpenAI

from tests.serve.conftest import RunningServer, serve
from tests.serve.test_server_tiny import tiny_dir  # noqa: F401  (the module's tiny model folder)

DRAIN = 3.0
LONG = {"model": "tiny", "prompt": "hello how are you", "max_tokens": 240, "temperature": 0}  # ~8 s at 30 ms a step


def refused(server: RunningServer) -> bool:
    url = urlparse(server.base_url)
    try:
        with socket.create_connection((url.hostname, url.port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def sse_events(response: httpx.Response) -> list[str]:
    return [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]


def wait_running(server: RunningServer, rows: int) -> None:
    deadline = time.monotonic() + 20
    while httpx.get(server.base_url + "/health").json()["running_rows"] < rows:
        assert time.monotonic() < deadline, "the requests did not start"
        time.sleep(0.05)


def test_sigterm_drains_running_requests_refuses_new_ones_cuts_the_rest_and_exits_0(
        tiny_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "no-vectors").mkdir()
    args = ["--model", str(tiny_dir), "--vectors", str(tmp_path / "no-vectors"), "--threads", "1",
            "--drain-seconds", str(DRAIN)]
    with serve(args, tmp_path / "server.log", module="tests.serve.slow_serve",
               env={"STEERWARM_TEST_STEP_DELAY": "0.03"}) as server, \
            httpx.Client(base_url=server.v1, timeout=60) as http, ThreadPoolExecutor(1) as pool:
        client = OpenAI(base_url=server.v1, api_key="unused", max_retries=0, timeout=60)
        short = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello"}],
                                               max_tokens=40, temperature=0, stream=True)  # ~1.2 s
        chunks = [next(iter(short))]
        plain = pool.submit(httpx.post, server.v1 + "/completions", json=LONG, timeout=60)
        with http.stream("POST", "/completions", json={**LONG, "stream": True}) as long:
            wait_running(server, 3)
            server.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            deadline = signalled + 2
            while not refused(server):  # the listener closes within a few ticks of uvicorn's loop
                assert time.monotonic() < deadline, "new connections still accepted during the drain"
                time.sleep(0.05)
            assert server.process.poll() is None  # still draining, not gone
            chunks += list(short)  # the short stream finishes normally
            events = sse_events(long)
        cut_after = time.monotonic() - signalled
        assert chunks[-1].choices[0].finish_reason == "length"
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert events[-1] == "[DONE]" and len(events) > 3
        error = json.loads(events[-2])["error"]
        assert error["code"] == "server_shutting_down" and "--drain-seconds" in error["message"], error
        assert all("error" not in json.loads(e) for e in events[:-2])  # text chunks up to the cut
        assert DRAIN - 0.5 < cut_after < DRAIN + 3, cut_after
        answer = plain.result()
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "server_shutting_down"
        assert answer.json()["error"]["type"] == "server_error"
        assert server.process.wait(timeout=20) == 0
        exited_after = time.monotonic() - signalled
    log = (tmp_path / "server.log").read_text()
    assert "SIGTERM received" in log and "drain deadline: cut 2 request(s)" in log, log
    assert exited_after < DRAIN + 10, exited_after
