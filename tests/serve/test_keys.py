"""API keys from a file, per-key limits, SIGHUP reload, and keys kept out of logs and metrics.

One real `steerwarm serve` on the tiny model (uvicorn's access log on) with a keys file of three ids and the single
`STEERWARM_API_KEY` beside them; the official openai client where a client is needed, a real `os.kill(pid, SIGHUP)`
for the reloads. The file format's errors and the windows' arithmetic are checked without a server.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from steerwarm.serve.engine import ChoiceDone, Delta, PromptReady
from steerwarm.serve.keys import KeysFileError, KeySpec, KeyState, parse_keys, read_keys_file
from steerwarm.serve.server import Bridge
from tests.serve.conftest import RunningServer, serve
from tests.serve.test_server_tiny import tiny_dir  # noqa: F401  (the module's tiny model folder)

KEYS = {kid: f"sk-{kid}-{secrets.token_urlsafe(18)}" for kid in ("alice", "bob", "carol", "dave")}
SINGLE = f"sk-single-{secrets.token_urlsafe(18)}"
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hello how are you"}], "temperature": 0}


def keys_text(*lines: str) -> str:
    return "# id key limits\n" + "\n".join(lines) + "\n"


def test_keys_file_errors_name_the_line_and_never_a_key(tmp_path: Path) -> None:
    good = parse_keys(keys_text(f"alice {KEYS['alice']} rpm=2 tpm=50  # a comment", "", f"bob {KEYS['bob']}"))
    assert good == [KeySpec("alice", KEYS["alice"], 2, 50), KeySpec("bob", KEYS["bob"])]
    erin = KEYS["dave"]
    bad = {
        f"{erin}": "expected an id and a key",
        f"er/in {erin}": "the id (first field)",
        f"erin {erin[:10]}": "the key (second field) must be 16-256",
        f"erin {erin} rpm=0": "rpm must be a positive integer",
        f"erin {erin} rpm=2 rpm=3": "rpm is given twice",
        f"erin {erin} burst=3": "unknown field",
        f"erin {KEYS['alice']}": "the key is the same as on line 2",
        f"alice {erin}": "the id is already used on line 2",
    }
    for line, why in bad.items():
        with pytest.raises(KeysFileError) as err:
            parse_keys(keys_text(f"alice {KEYS['alice']}", line), "keys.txt")
        assert f"keys.txt:3: {why}" in str(err.value), (line, str(err.value))
        assert not any(k in str(err.value) or k[:10] in str(err.value) for k in KEYS.values())
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n")
    with pytest.raises(KeysFileError, match="no keys"):
        read_keys_file(empty)
    clash = tmp_path / "clash.txt"
    clash.write_text(f"default {KEYS['alice']}\n")
    with pytest.raises(KeysFileError, match="reserved for --api-key"):
        read_keys_file(clash, SINGLE)


def test_sliding_windows_admit_refuse_and_say_when() -> None:
    now = [100.0]
    key = KeyState(KeySpec("k", KEYS["alice"], rpm=2, tpm=100), clock=lambda: now[0])
    assert key.admit() is None
    now[0] = 110.0
    assert key.admit() is None
    assert key.admit() == ("rpm", 50.0)  # the first admission leaves the window at 160
    now[0] = 160.0
    assert key.admit() is None  # it has left
    key.charge(60)
    now[0] = 165.0
    key.charge(50)  # 110 tokens in the window: over 100
    now[0] = 170.0
    assert key.admit() == ("tpm", 50.0)  # once the 60 charged at 160 leave, 50 < 100
    now[0] = 220.0
    assert key.admit() is None and key.usage() == (1, 50)
    # a reload's new state for the same id shares the window: a request admitted before it is charged to both
    reloaded = KeyState(KeySpec("k", KEYS["bob"], rpm=2, tpm=100), clock=lambda: now[0])
    reloaded.adopt(key)
    key.charge(30)
    assert reloaded.usage() == key.usage() == (1, 80)
    now[0] = 300.0
    assert reloaded.usage() == (0, 0)


def test_a_request_that_ends_early_is_charged_what_it_used() -> None:
    loop = asyncio.new_event_loop()
    try:
        bridge = Bridge(loop)  # two prompts, n=2: prompt 1's choice 0 finished, the others streamed 1 and 2 chunks
        first, second = bridge.sink(0), bridge.sink(1)
        first(PromptReady(5, None, None))
        second(PromptReady(7, None, None))
        for sink, choice in ((first, 0), (first, 0), (first, 1), (second, 0), (second, 0)):
            sink(Delta(choice, "x", ()))
        first(ChoiceDone(0, "length", "xx", "", (), 4, None, 0.0, 0))  # 4 tokens, 2 of them streamed
        assert bridge.tokens == 5 + 7 + 4 + 1 + 2
    finally:
        loop.close()


def test_a_bad_keys_file_stops_the_start_up_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text(keys_text(f"alice {KEYS['alice']}", f"bob {KEYS['bob']} rpm=fast"))
    out = subprocess.run([sys.executable, "-m", "steerwarm.cli", "serve", "--api-keys-file", str(path), "--port",
                          "1"], capture_output=True, text=True, timeout=120)
    err = " ".join(out.stderr.split())
    assert out.returncode == 2 and f"{path}:3: rpm must be a positive integer" in err, out.stderr
    assert KEYS["bob"] not in out.stderr + out.stdout


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "keys.txt"
    path.write_text(keys_text(f"alice {KEYS['alice']} rpm=2", f"bob {KEYS['bob']} tpm=12", f"carol {KEYS['carol']}"))
    return path


@pytest.fixture(scope="module")
def keyed(tiny_dir: Path, keys_file: Path) -> Iterator[RunningServer]:  # noqa: F811
    (keys_file.parent / "no-vectors").mkdir()
    with serve(["--model", str(tiny_dir), "--vectors", str(keys_file.parent / "no-vectors"), "--threads", "1",
                "--api-keys-file", str(keys_file), "--log-level", "info"], keys_file.parent / "server.log",
               env={"STEERWARM_API_KEY": SINGLE}) as running:
        yield running


def client(server: RunningServer, kid: str) -> OpenAI:
    return OpenAI(base_url=server.v1, api_key=SINGLE if kid == "default" else KEYS[kid], max_retries=0, timeout=60)


def metrics(server: RunningServer) -> str:
    return httpx.get(server.base_url + "/metrics", headers={"Authorization": f"Bearer {SINGLE}"}).text


def test_limits_answer_429_with_retry_after_and_usage_is_counted_by_key_id(keyed: RunningServer) -> None:
    alice = client(keyed, "alice")
    alice.models.list()
    alice.models.list()
    with pytest.raises(openai.RateLimitError) as err:
        alice.models.list()
    body = err.value.body
    assert isinstance(body, dict) and body["code"] == "rate_limit_exceeded" and "'alice'" in body["message"]
    assert err.value.response.headers.get("www-authenticate") is None
    bob = client(keyed, "bob")
    done = bob.chat.completions.create(max_tokens=8, **CHAT)  # type: ignore[call-overload]
    assert done.usage is not None and done.usage.total_tokens >= 12  # charged when it finished: over bob's 12
    with pytest.raises(openai.RateLimitError) as err:
        bob.chat.completions.create(max_tokens=8, **CHAT)  # type: ignore[call-overload]
    assert "12 tokens per minute" in str(err.value) and "retry in " in str(err.value)
    client(keyed, "default").models.list()  # the single key works beside the file's
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=keyed.v1, api_key=KEYS["dave"], max_retries=0).models.list()
    text = metrics(keyed)
    for line in ('steerwarm_key_requests_total{key="alice",status="200"} 2',
                 'steerwarm_key_requests_total{key="alice",status="429"} 1',
                 'steerwarm_key_requests_total{key="bob",status="429"} 1',
                 f'steerwarm_key_tokens_total{{key="bob",kind="prompt"}} {done.usage.prompt_tokens}',
                 f'steerwarm_key_tokens_total{{key="bob",kind="completion"}} {done.usage.completion_tokens}',
                 "steerwarm_api_keys 4.0", "steerwarm_rate_limited_total 2.0"):
        assert line in text, line


def test_a_429_for_a_key_over_its_limit_says_when_to_retry(keyed: RunningServer) -> None:
    with pytest.raises(openai.RateLimitError) as err:
        client(keyed, "alice").models.list()  # alice's 2 requests a minute are spent (the test above)
    assert 1 <= int(err.value.response.headers["retry-after"]) <= 60
    assert err.value.response.headers["retry-after"] in str(err.value)  # "retry in N s"


def wait_for(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def authorized(server: RunningServer, kid: str) -> bool:
    r = httpx.get(server.v1 + "/models", headers={"Authorization": f"Bearer {KEYS[kid]}"})
    assert r.status_code in (200, 401), r.text
    return r.status_code == 200


def test_sighup_reloads_keys_leaves_running_requests_alone_and_keeps_the_old_keys_on_a_bad_file(
        keyed: RunningServer, keys_file: Path) -> None:
    carol = client(keyed, "carol")
    stream = iter(carol.chat.completions.create(max_tokens=30, stream=True, **CHAT))  # type: ignore[call-overload]
    first = next(stream)  # admitted with carol's key, still running
    keys_file.write_text(keys_text(f"alice {KEYS['alice']} rpm=2", f"dave {KEYS['dave']}"))
    os.kill(keyed.process.pid, signal.SIGHUP)
    wait_for(lambda: authorized(keyed, "dave"))
    assert not authorized(keyed, "carol")  # removed: new requests refused
    chunks = [first, *stream]  # the one in flight finishes normally
    assert chunks[-1].choices[-1].finish_reason == "length"
    assert "keys reloaded" in keyed.log.read_text() and "3 in force (default, alice, dave)" in keyed.log.read_text()
    keys_file.write_text(keys_text(f"dave {KEYS['dave']}", f"erin {KEYS['carol']} tpm=ten"))
    os.kill(keyed.process.pid, signal.SIGHUP)
    wait_for(lambda: "keys not reloaded" in keyed.log.read_text())
    assert f"{keys_file}:3: tpm must be a positive integer" in keyed.log.read_text()
    assert authorized(keyed, "dave") and not authorized(keyed, "carol")  # the previous keys stay in force
    assert keyed.process.poll() is None


def test_no_key_appears_in_the_log_or_the_metrics(keyed: RunningServer) -> None:
    for kid in ("alice", "carol", "dave"):
        httpx.get(keyed.v1 + "/models", headers={"Authorization": f"Bearer {KEYS[kid]}"})
    text, log = metrics(keyed), keyed.log.read_text()
    assert 'key="dave"' in text and "GET /v1/models" in log  # the requests are there, under ids
    for key in [*KEYS.values(), SINGLE]:
        assert key not in text and key not in log
        assert key[-12:] not in text and key[-12:] not in log
