"""The real server on the real default model, driven by the official `openai` client (and raw HTTP for inputs the
client cannot send): chat, completions, streaming, the dial, batching equality, errors, limits and metrics.

One server process for the whole module: `steerwarm serve` in a subprocess on a free 127.0.0.1 port, with a
vectors folder holding the starter vector and a provisional warm/cold dial made from it (warmth 1 = raw 0.3).
"""

from __future__ import annotations

import http.client
import json
import shutil
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest
import torch
from openai import OpenAI

from steerwarm.model.chat import chat_text
from steerwarm.model.load import LoadedModel
from steerwarm.serve.registry import write_provisional_dial
from steerwarm.steer.generate import GenerationConfig, generate_texts
from steerwarm.steer.hooks import SteerSpec, steer
from steerwarm.steer.vector import SteeringVector
from tests.serve.conftest import RunningServer, serve

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
STARTER = REPO / "vectors" / "starter-contrast.safetensors"
MODEL = "smollm2-135m"
KEY = "test-key-123"
MAX_BATCH = 4
MAX_QUEUE = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("serve")
    vectors = root / "vectors"
    write_provisional_dial(SteeringVector.load(STARTER), vectors, 0.3)
    shutil.copy(STARTER, vectors / STARTER.name)
    args = ["--vectors", str(vectors), "--api-key", KEY, "--max-batch", str(MAX_BATCH), "--max-queue",
            str(MAX_QUEUE), "--threads", "2"]
    with serve(args, root / "server.log") as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> OpenAI:
    return OpenAI(base_url=server.v1, api_key=KEY, max_retries=0, timeout=300)


def _chat(client: OpenAI, content: str, *, max_tokens: int = 20, **extra: Any) -> Any:
    body = {k: extra.pop(k) for k in ("warmth", "steering") if k in extra}
    return client.chat.completions.create(model=extra.pop("model", MODEL),
                                          messages=[{"role": "user", "content": content}],
                                          max_tokens=max_tokens, temperature=extra.pop("temperature", 0.0),
                                          extra_body=body or None, **extra)


def _raw(server: RunningServer, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    port = int(server.base_url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    hdrs = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}", **(headers or {})}
    conn.request(method, path, body=body, headers={k: v for k, v in hdrs.items() if v})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, json.loads(data) if data else {}


def _health(server: RunningServer) -> dict[str, Any]:
    with urllib.request.urlopen(server.base_url + "/health", timeout=10) as r:
        out: dict[str, Any] = json.loads(r.read())
        return out


def _still_serves(client: OpenAI) -> None:
    out = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=2, temperature=0)
    assert out.choices[0].finish_reason == "length" and out.usage is not None and out.usage.completion_tokens == 2


def test_models_lists_the_served_model_and_its_vectors(client: OpenAI) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == [MODEL]
    extra = models[0].model_extra or {}
    info = extra["steerwarm"]
    assert info["vectors"] == {"cold": [15], "starter-contrast": [15], "warm": [15]}
    assert info["dial"]["enabled"] is True and info["context_length"] == 8192
    assert client.models.retrieve(MODEL).id == MODEL


def test_greedy_warmth_zero_is_the_base_model_and_warmth_moves_it(client: OpenAI, real: LoadedModel) -> None:
    prompt = "I failed my exam today and I feel stupid."
    base = generate_texts(real, [chat_text(real, [{"role": "user", "content": prompt}])],
                          config=GenerationConfig(max_new_tokens=24))[0]
    zero = _chat(client, prompt, max_tokens=24)
    assert zero.choices[0].message.content == base
    steering = (zero.model_extra or {})["steering"]
    assert steering["warmth"] == 0 and steering["vectors"] == []
    assert steering["monitor"] == {"vector": "warm", "layer": 15}

    warm = _chat(client, prompt, max_tokens=24, warmth=1.0)
    cold = _chat(client, prompt, max_tokens=24, model=f"{MODEL}@warmth=-1")
    texts = {warm.choices[0].message.content, cold.choices[0].message.content}
    assert base not in texts and len(texts) == 2
    ws, cs = (warm.model_extra or {})["steering"], (cold.model_extra or {})["steering"]
    assert ws["vectors"] == [{"name": "warm", "layers": [15], "coef": pytest.approx(0.3), "source": "dial"}]
    assert cs["vectors"] == [{"name": "cold", "layers": [15], "coef": pytest.approx(0.3), "source": "dial"}]
    assert ws["warmth_projection"] > cs["warmth_projection"]  # the monitor reads the warmer text as warmer
    # raw steering along the same direction at the same coefficient is the same computation as the dial
    raw = _chat(client, prompt, max_tokens=24, steering={"vector": "starter-contrast", "coef": 0.3})
    assert raw.choices[0].message.content == warm.choices[0].message.content


def test_concurrent_requests_with_different_warmth_equal_their_solo_runs(client: OpenAI) -> None:
    jobs = [("Tell me about the sea.", 0.0), ("How do I make a cup of tea?", 1.0),
            ("My dog died yesterday.", -1.0), ("What is a good name for a cat?", 0.5)]
    alone = [_chat(client, p, max_tokens=20, warmth=w).choices[0].message.content for p, w in jobs]

    def run(i: int) -> str:
        time.sleep(0.4 * i)  # staggered: later requests join a batch that is already decoding
        out = _chat(client, jobs[i][0], max_tokens=20, warmth=jobs[i][1]).choices[0].message.content
        return str(out)

    with ThreadPoolExecutor(len(jobs)) as pool:
        together = list(pool.map(run, range(len(jobs))))
    assert together == alone


def test_streaming_chat_equals_the_plain_response_and_ends_with_steering(client: OpenAI) -> None:
    prompt = "Write one sentence about autumn."
    plain = _chat(client, prompt, max_tokens=16, warmth=0.5)
    chunks = list(_chat(client, prompt, max_tokens=16, warmth=0.5, stream=True,
                        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [plain.choices[0].finish_reason]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == plain.usage.completion_tokens
    steering = (last.model_extra or {})["steering"]
    assert steering["warmth"] == 0.5 and steering["warmth_projection"] is not None
    assert all("steering" not in (c.model_extra or {}) for c in chunks[:-1])


def test_completion_echo_logprobs_score_the_prompt_under_steering(client: OpenAI, server: RunningServer,
                                                                   real: LoadedModel) -> None:
    text = "My friend said, \"You did your best and that is what matters.\""
    ids = real.tokenizer(text)["input_ids"]
    warm = SteeringVector.load(STARTER)
    for warmth in (0.0, 1.0):
        out = client.completions.create(model=MODEL, prompt=text, max_tokens=0, echo=True, logprobs=3,
                                        extra_body={"warmth": warmth})
        lp = out.choices[0].logprobs
        assert lp is not None and out.choices[0].text == text
        assert lp.tokens is not None and "".join(lp.tokens) == text
        assert lp.text_offset is not None and lp.text_offset[-1] == text.rindex(lp.tokens[-1])
        assert lp.token_logprobs is not None and lp.token_logprobs[0] is None
        with torch.no_grad(), steer(real.model, [SteerSpec(warm, 0.3 * warmth)]):
            logits = real.model(input_ids=torch.tensor([ids])).logits[0].float()
        want = torch.log_softmax(logits, -1)[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
        got = torch.tensor(lp.token_logprobs[1:])
        assert torch.allclose(got, want, atol=2e-4), (got - want).abs().max()
        assert lp.top_logprobs is not None and len(lp.top_logprobs[1] or {}) >= 3
    # generated-token logprobs, and the same request as a stream
    gen = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=6, temperature=0, logprobs=2)
    assert gen.choices[0].logprobs is not None and len(gen.choices[0].logprobs.tokens or []) == 6
    streamed = list(client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=6, temperature=0,
                                              stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == gen.choices[0].text
    assert "steering" in (streamed[-1].model_extra or {})


def test_seed_stop_and_n(client: OpenAI) -> None:
    prompt = "Give me three ideas for a weekend."
    a = _chat(client, prompt, max_tokens=16, temperature=0.9, seed=42)
    b = _chat(client, prompt, max_tokens=16, temperature=0.9, seed=42)
    c = _chat(client, prompt, max_tokens=16, temperature=0.9, seed=43)
    assert a.choices[0].message.content == b.choices[0].message.content != c.choices[0].message.content
    many = _chat(client, prompt, max_tokens=16, temperature=0.9, seed=42, n=2)
    assert [ch.message.content for ch in many.choices] == [a.choices[0].message.content,
                                                             c.choices[0].message.content]
    full = _chat(client, prompt, max_tokens=24).choices[0].message.content
    words = full.split()
    stop = words[len(words) // 2]
    cut = _chat(client, prompt, max_tokens=24, stop=[stop, "zzzz"])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == full[:full.index(stop)]


BAD_INPUTS: list[tuple[str, str, bytes, dict[str, str], int, str | None, str]] = [
    ("malformed JSON", "/v1/chat/completions", b'{"model": "smollm2-135m", "messages": [', {}, 400, None,
     "invalid_json"),
    ("empty body", "/v1/completions", b"", {}, 400, None, "invalid_json"),
    ("wrong type", "/v1/chat/completions",
     json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": "ten"}).encode(),
     {}, 400, "max_tokens", "invalid_type"),
    ("wrong role", "/v1/chat/completions",
     json.dumps({"model": MODEL, "messages": [{"role": "robot", "content": "hi"}]}).encode(), {}, 400,
     "messages[0].role", "invalid_value"),
    ("unknown model", "/v1/chat/completions",
     json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).encode(), {}, 404, "model",
     "model_not_found"),
    ("bad model suffix", "/v1/completions",
     json.dumps({"model": MODEL + "@warmth=hot", "prompt": "hi"}).encode(), {}, 400, "model",
     "invalid_model_suffix"),
    ("unknown vector", "/v1/completions",
     json.dumps({"model": MODEL, "prompt": "hi", "steering": {"vector": "/etc/passwd", "coef": 0.2}}).encode(), {},
     400, "steering.vector", "vector_not_found"),
    ("warmth out of range", "/v1/completions", json.dumps({"model": MODEL, "prompt": "hi", "warmth": 4}).encode(),
     {}, 400, "warmth", "warmth_out_of_range"),
    ("too long: max_tokens", "/v1/completions",
     json.dumps({"model": MODEL, "prompt": "hi", "max_tokens": 9000}).encode(), {}, 400, "max_tokens",
     "context_length_exceeded"),
    ("too long: prompt", "/v1/completions",
     json.dumps({"model": MODEL, "prompt": "hello " * 8300, "max_tokens": 1}).encode(), {}, 400, "prompt",
     "context_length_exceeded"),
    ("unsupported parameter", "/v1/chat/completions",
     json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "presence_penalty": 0.5}).encode(),
     {}, 400, "presence_penalty", "unsupported_parameter"),
    ("unsupported response_format", "/v1/chat/completions",
     json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                 "response_format": {"type": "json_object"}}).encode(), {}, 400, "response_format",
     "unsupported_parameter"),
    ("unsupported best_of", "/v1/completions", json.dumps({"model": MODEL, "prompt": "hi", "best_of": 3}).encode(),
     {}, 400, "best_of", "unsupported_parameter"),
    ("unknown field", "/v1/completions", json.dumps({"model": MODEL, "prompt": "hi", "temprature": 0}).encode(), {},
     400, "temprature", "unknown_parameter"),
    ("n beyond the batch", "/v1/completions", json.dumps({"model": MODEL, "prompt": "hi", "n": 9}).encode(), {},
     400, "n", "invalid_value"),
    ("missing key", "/v1/completions", json.dumps({"model": MODEL, "prompt": "hi"}).encode(),
     {"Authorization": ""}, 401, None, "invalid_api_key"),
    ("wrong key", "/v1/completions", json.dumps({"model": MODEL, "prompt": "hi"}).encode(),
     {"Authorization": "Bearer test-key-124"}, 401, None, "invalid_api_key"),
    ("body too large", "/v1/completions", b'{"model": "smollm2-135m", "prompt": "' + b"a" * (1 << 21) + b'"}', {},
     413, None, "request_too_large"),
]


@pytest.mark.parametrize(("what", "path", "body", "headers", "status", "param", "code"), BAD_INPUTS,
                         ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_gets_an_error_object_and_the_server_keeps_serving(
        server: RunningServer, client: OpenAI, what: str, path: str, body: bytes, headers: dict[str, str],
        status: int, param: str | None, code: str) -> None:
    got, data = _raw(server, "POST", path, body, headers)
    assert got == status, data
    err = data["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert (err["param"], err["code"]) == (param, code)
    assert len(err["message"]) > 20
    _still_serves(client)


def test_the_official_client_raises_typed_errors(server: RunningServer, client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        _chat(client, "hi", model="gpt-4o")
    with pytest.raises(openai.BadRequestError, match="tools"):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                       tools=[{"type": "function", "function": {"name": "f"}}])
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=server.v1, api_key="nope", max_retries=0).models.list()
    _still_serves(client)


def test_full_queue_is_429_and_disconnected_streams_free_their_rows(server: RunningServer, client: OpenAI) -> None:
    streams = []
    try:
        for i in range(MAX_BATCH + MAX_QUEUE):
            streams.append(_chat(client, f"Count slowly from {i} to one thousand.", max_tokens=2000, stream=True))
            if i < MAX_BATCH:  # let each running stream be admitted before queueing the next
                deadline = time.monotonic() + 60
                while _health(server)["running_rows"] < i + 1 and time.monotonic() < deadline:
                    time.sleep(0.05)
        deadline = time.monotonic() + 60
        while (_health(server)["running_rows"], _health(server)["queue_depth"]) != (MAX_BATCH, MAX_QUEUE):
            assert time.monotonic() < deadline, _health(server)
            time.sleep(0.05)
        with pytest.raises(openai.RateLimitError) as info:
            _chat(client, "one more", max_tokens=2)
        assert info.value.status_code == 429 and "queue is full" in str(info.value)
        next(iter(streams[0]))  # a running stream really streams
    finally:
        for s in streams:
            s.close()
    deadline = time.monotonic() + 60
    while (_health(server)["running_rows"], _health(server)["queue_depth"]) != (0, 0):
        assert time.monotonic() < deadline, "disconnected clients did not free their rows"
        time.sleep(0.1)
    _still_serves(client)


def test_a_disconnected_non_streaming_client_frees_its_row(server: RunningServer, client: OpenAI) -> None:
    port = int(server.base_url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Count to one thousand."}],
                       "max_tokens": 2000, "temperature": 0})
    conn.request("POST", "/v1/chat/completions", body=body,
                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    deadline = time.monotonic() + 60
    while _health(server)["running_rows"] != 1:
        assert time.monotonic() < deadline, _health(server)
        time.sleep(0.05)
    conn.close()  # the client goes away without reading the response
    deadline = time.monotonic() + 30
    while _health(server)["running_rows"] != 0:
        assert time.monotonic() < deadline, "the abandoned request kept its row"
        time.sleep(0.1)
    _still_serves(client)


def test_metrics_count_requests_tokens_and_batch(server: RunningServer, client: OpenAI) -> None:
    _still_serves(client)
    req = urllib.request.Request(server.base_url + "/metrics", headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
        assert r.headers["Content-Type"].startswith("text/plain")
    assert 'steerwarm_requests_total{endpoint="/v1/completions",status="200"}' in text
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert float(lines["steerwarm_completion_tokens_total"]) >= 2
    assert float(lines["steerwarm_prompt_tokens_total"]) > 0
    for name in ("steerwarm_queue_depth", "steerwarm_running_rows", "steerwarm_decode_steps_total",
                 "steerwarm_kv_slot_bytes", "steerwarm_kv_slot_grows_total",
                 'steerwarm_request_latency_seconds_count{endpoint="/v1/completions"}'):
        assert name in lines
    status, _ = _raw(server, "GET", "/metrics", headers={"Authorization": ""})
    assert status == 401


def test_threads_share_one_batch(server: RunningServer, client: OpenAI) -> None:
    """Several clients at once are decoded together (the batch holds more than one row at some point)."""
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(int(_health(server)["running_rows"]))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda i: _chat(client, f"Name {i} colours.", max_tokens=12), range(3)))
    finally:
        stop.set()
        watcher.join()
    assert max(seen) >= 2
