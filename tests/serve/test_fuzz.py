"""The server under generated and hand-made attack, on a real server (the tiny model with a calibrated dial):

- Schemathesis generates bounded cases from the server's own /openapi.json for every operation: no 5xx, every 4xx an
  OpenAI error object, every status and body as the document declares (status, content type, response schema).
- Hand-made cases it does not produce: a rebound Host and a body not sent as JSON (the guard), invalid UTF-8, a JSON
  nesting bomb, a 100 MB body, a body that arrives byte by byte, a header flood, a request cancelled during prefill.
- After all of it, a normal request is answered exactly as before, and nothing is left running.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from steerwarm.model.load import load
from steerwarm.steer.vector import Calibration
from tests.conftest import make_tiny_model, make_tokenizer, random_vector
from tests.serve.conftest import RunningServer, serve

EXAMPLES = 25  # generated cases per operation (bounded: the suite's time)
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "i feel sad today"}], "max_tokens": 6,
        "temperature": 0, "warmth": 1.0}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("fuzz-model") / "tiny"
    make_tiny_model(layers=2).save_pretrained(str(folder))
    make_tokenizer().save_pretrained(str(folder))
    tiny = load(str(folder))
    vectors = tmp_path_factory.mktemp("fuzz-vectors")
    for name, seed in (("warm", 1), ("cold", 2)):
        vec = random_vector(tiny, [1], seed=seed, name=name)
        vec.calibration = Calibration(dial=[0.0, 1.0], coef=[0.0, 1.0])
        vec.save(vectors / f"{name}.safetensors")
    with serve(["--model", str(folder), "--vectors", str(vectors), "--threads", "1", "--max-batch", "8"],
               vectors.parent / "fuzz-server.log") as running:
        yield running


@pytest.fixture(scope="module")
def before(server: RunningServer) -> dict[str, Any]:
    """A normal request's answer before any attack."""
    r = httpx.post(f"{server.v1}/chat/completions", json=CHAT, timeout=60)
    assert r.status_code == 200, r.text
    return dict(r.json()["choices"][0]["message"])


def error_object(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx and 5xx body is exactly an OpenAI error object."""
    if response.status_code < 400:
        return None
    body = response.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"} and isinstance(err["message"], str) and err["message"]
    return True


def test_generated_cases_get_no_5xx_and_only_declared_answers(server: RunningServer, before: dict[str, Any]) -> None:
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
              error_object]
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} == {
        "POST /v1/chat/completions", "POST /v1/completions", "GET /v1/models", "GET /v1/models/{model}",
        "GET /health", "GET /metrics"}
    calls = {"n": 0}
    for op in operations:
        @given(case=op.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            if isinstance(case.body, dict) and isinstance(case.body.get("max_tokens"), int):
                case.body["max_tokens"] = min(case.body["max_tokens"], 4)  # keep generation short
            calls["n"] += 1
            case.call_and_validate(timeout=60, checks=checks)

        run()
    assert calls["n"] >= 4 * len(operations)


def _raw(server: RunningServer, data: bytes, *, pause: float = 0.0, chunk: int = 1 << 16) -> bytes:
    """Send raw bytes (in chunks of `chunk`, `pause` s apart) and read the reply until the server closes."""
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as s:
        try:
            for i in range(0, len(data), chunk):
                s.sendall(data[i:i + chunk])
                if pause:
                    time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early and closed: read what it said
        out = b""
        try:
            while part := s.recv(65536):
                out += part
        except (ConnectionResetError, TimeoutError):
            pass
    return out


def _post(body: bytes, extra: str = "") -> bytes:
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n").encode() + body


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def _error_code(reply: bytes) -> str:
    return str(json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]["code"])


def test_hand_made_attacks_get_clear_4xx(server: RunningServer, before: dict[str, Any]) -> None:
    good = json.dumps(CHAT).encode()
    bad_utf8 = good.replace(b"sad", b"s\xff\xfed")
    reply = _raw(server, _post(bad_utf8))
    assert _status(reply) == 400 and b'"error"' in reply, reply[:300]
    bomb = b'{"model": "tiny", "messages": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    reply = _raw(server, _post(bomb))
    assert _status(reply) in (400, 413) and b'"error"' in reply, reply[:300]
    huge = b'{"model": "tiny", "messages": [], "pad": "' + b"x" * (100 << 20) + b'"}'
    reply = _raw(server, _post(huge), chunk=1 << 20)
    assert _status(reply) == 413 and _error_code(reply), reply[:300]
    # `steerwarm serve` puts the guard in front (serve/guard.py): a rebound Host, a body not sent as JSON
    reply = _raw(server, _post(good).replace(b"Host: 127.0.0.1", b"Host: rebind.attacker.example"))
    assert _status(reply) == 403 and _error_code(reply) == "host_not_allowed", reply[:300]
    reply = _raw(server, _post(good).replace(b"application/json", b"text/plain"))
    assert _status(reply) == 415 and _error_code(reply) == "unsupported_media_type", reply[:300]
    slow = _raw(server, _post(good), pause=0.002, chunk=1)  # byte by byte
    assert _status(slow) == 200 and json.loads(slow.split(b"\r\n\r\n", 1)[1])["choices"][0]["message"] == before
    flood = "".join(f"X-Flood-{i}: {'v' * 64}\r\n" for i in range(4000))
    reply = _raw(server, _post(good, flood))
    assert reply == b"" or 400 <= _status(reply) < 500, reply[:300]  # refused by the HTTP layer, never a 5xx
    long_prompt = {**CHAT, "messages": [{"role": "user", "content": "hello " * 150}], "max_tokens": 32,
                   "stream": True}
    with httpx.Client(timeout=30) as http, http.stream("POST", f"{server.v1}/chat/completions",
                                                       json=long_prompt) as r:
        assert r.status_code == 200  # then the client goes away during prefill
    deadline = time.monotonic() + 30
    while (h := httpx.get(f"{server.base_url}/health").json())["running_rows"] or h["queue_depth"]:
        assert time.monotonic() < deadline, h
        time.sleep(0.2)


def test_after_the_attacks_a_normal_request_is_answered_as_before(server: RunningServer,
                                                                  before: dict[str, Any]) -> None:
    r = httpx.post(f"{server.v1}/chat/completions", json=CHAT, timeout=60)
    assert r.status_code == 200 and r.json()["choices"][0]["message"] == before
    health = httpx.get(f"{server.base_url}/health").json()
    assert health["running_rows"] == 0 and health["queue_depth"] == 0
    assert "Traceback" not in Path(server.log).read_text()
