"""Browser-borne requests (serve/guard.py) on a real server (in-process, tiny model): Host checked against the bound
address and an allowlist (DNS rebinding), JSON bodies only (415), CORS off by default and exact with an allowlist;
every refusal an OpenAI error object, counted in /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from steerwarm.serve.engine import Engine
from steerwarm.serve.guard import GuardConfig, host_name
from steerwarm.serve.registry import SteeringRegistry
from steerwarm.serve.routes import create_app
from steerwarm.serve.server import ServerConfig
from tests.conftest import loaded, make_tiny_model, make_tokenizer
from tests.inprocess import serve_in_thread

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2, "temperature": 0}


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    tiny = loaded(make_tiny_model(layers=2), make_tokenizer(), "tiny")
    eng = Engine(tiny, SteeringRegistry({}, None, dial_note="none", num_layers=tiny.num_layers), max_batch=4)
    eng.start()
    yield eng
    eng.stop()


@contextmanager
def guarded(engine: Engine, **guard: Any) -> Iterator[tuple[str, int]]:
    app = create_app(engine, ServerConfig(model_name="tiny"), manage_engine=False, guard=GuardConfig(**guard))
    with serve_in_thread(app) as url:
        yield url, int(url.rsplit(":", 1)[1])


def _error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"], err
    return err


def test_host_header_is_checked_against_the_loopback_bind_and_the_allowlist(engine: Engine) -> None:
    with guarded(engine, bind="127.0.0.1", allowed_hosts=("My-Box.lan",)) as (url, port):
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "my-box.lan:8000", "localhost"):
            assert httpx.get(f"{url}/health", headers={"Host": host}).status_code == 200, host
        for host in (f"rebind.attacker.example:{port}", "127.0.0.2", "my-box.lan.attacker.example"):
            err = _error(httpx.get(f"{url}/v1/models", headers={"Host": host}), 403, "host_not_allowed")
            assert "--allowed-host" in err["message"]
        _error(httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers={"Host": "evil.example"}), 403,
               "host_not_allowed")
        metrics = httpx.get(f"{url}/metrics").text
        assert 'steerwarm_requests_total{endpoint="/v1/models",status="403"} 3' in metrics


def test_a_server_on_every_interface_takes_any_host_unless_an_allowlist_is_given(engine: Engine) -> None:
    with guarded(engine, bind="0.0.0.0") as (url, _):
        assert httpx.get(f"{url}/health", headers={"Host": "anything.example"}).status_code == 200
    with guarded(engine, bind="0.0.0.0", allowed_hosts=("api.example.com",)) as (url, _):
        assert httpx.get(f"{url}/health", headers={"Host": "api.example.com:443"}).status_code == 200
        assert httpx.get(f"{url}/health", headers={"Host": "127.0.0.1"}).status_code == 200
        _error(httpx.get(f"{url}/health", headers={"Host": "other.example"}), 403, "host_not_allowed")


def test_bodies_must_be_json_and_cors_is_off_by_default(engine: Engine) -> None:
    body = '{"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2}'
    with guarded(engine) as (url, _):
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
            headers = {"Content-Type": ctype} if ctype else {}
            err = _error(httpx.post(f"{url}/v1/chat/completions", content=body, headers=headers), 415,
                         "unsupported_media_type")
            assert "application/json" in err["message"] and err["param"] == "Content-Type"
        ok = httpx.post(f"{url}/v1/chat/completions", content=body,
                        headers={"Content-Type": "application/json; charset=utf-8"})
        assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 2
        # CORS off: no Access-Control headers on a cross-origin request, and its preflight is refused
        r = httpx.get(f"{url}/v1/models", headers={"Origin": "https://evil.example"})
        assert r.status_code == 200 and not any(k.lower().startswith("access-control") for k in r.headers)
        pre = httpx.options(f"{url}/v1/chat/completions", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        _error(pre, 403, "cors_origin_not_allowed")
        assert "access-control-allow-origin" not in pre.headers


def test_cors_allowlist_answers_listed_origins_only(engine: Engine) -> None:
    with guarded(engine, cors_origins=("https://app.example",)) as (url, _):
        pre = httpx.options(f"{url}/v1/chat/completions", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
        assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "https://app.example"
        assert "POST" in pre.headers["access-control-allow-methods"]
        assert "Authorization" in pre.headers["access-control-allow-headers"]
        r = httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers={"Origin": "https://app.example"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
        assert r.headers["vary"] == "Origin"
        other = httpx.get(f"{url}/v1/models", headers={"Origin": "https://app.example.evil"})
        assert "access-control-allow-origin" not in other.headers
        _error(httpx.options(f"{url}/v1/models", headers={"Origin": "https://app.example.evil",
                                                          "Access-Control-Request-Method": "GET"}),
               403, "cors_origin_not_allowed")


def test_host_names_are_parsed_without_port_or_brackets() -> None:
    assert [host_name(h) for h in ("LocalHost:8000", "[::1]:80", "[::1]", "::1", "a.b", "a.b:1")] == \
        ["localhost", "::1", "::1", "::1", "a.b", "a.b"]
    assert GuardConfig(bind="10.0.0.5").hosts() == frozenset({"10.0.0.5"})
    assert GuardConfig(bind="::").hosts() is None
