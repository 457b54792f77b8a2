"""`steerwarm serve --engine vllm` (a real server process from .venv-vllm, float32, the shipped dial) against the
same front end over steerwarm's own engine (`--engine hf`, in process), both through the official openai client:
greedy warmth 0 answers agree, `@warmth=1` changes the answer and reports the dial and a finite warmth projection
that moves the way hf's does, streaming matches, echo and logprobs come back, and an unknown vector is a 400 error
object while the server keeps serving (its /metrics too)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

vllm = pytest.importorskip("vllm", reason="vLLM is not installed here; `make test-vllm` runs these in .venv-vllm")
pytestmark = pytest.mark.vllm

import openai  # noqa: E402

from steerwarm.serve.vllm_process import free_port  # noqa: E402

MODEL = "smollm2-135m"
PROMPTS = ["I failed my exam today.", "What is the capital of Australia?", "My cat died this morning."]
MAX_TOKENS = 24


@pytest.fixture(scope="module")
def vllm_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """`steerwarm serve --engine vllm` started on a free port (127.0.0.1), not yet waited for."""
    log = tmp_path_factory.mktemp("serve-vllm") / "server.log"
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_WAIT_POLICY="PASSIVE", VLLM_CPU_KVCACHE_SPACE="1",
               VLLM_CPU_NUM_OF_RESERVED_CPU="0")
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "steerwarm.cli", "serve", "--engine", "vllm", "--host",
                                 "127.0.0.1", "--port", str(port), "--max-batch", "8"],
                                stdout=fh, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc, f"http://127.0.0.1:{port}", log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def vllm_server(vllm_process: tuple[subprocess.Popen[bytes], str, Path], hf_client: openai.OpenAI) -> str:
    """The server's /v1 URL once it answers /health (the hf side loads meanwhile)."""
    proc, base, log = vllm_process
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                if r.status == 200:
                    return base + "/v1"
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server did not start within 300 s:\n{_tail(log)}")
        time.sleep(0.5)


def _tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-40:])


@pytest.fixture(scope="module")
def hf_client(vllm_process: tuple[subprocess.Popen[bytes], str, Path]) -> Iterator[openai.OpenAI]:
    """The same HTTP layer over steerwarm's batching engine, in process (starlette's TestClient is an httpx client)."""
    import torch
    from starlette.testclient import TestClient

    from steerwarm.model.load import load
    from steerwarm.paths import shipped_vectors
    from steerwarm.serve.engine import Engine
    from steerwarm.serve.registry import SteeringRegistry
    from steerwarm.serve.routes import create_app
    from steerwarm.serve.server import ServerConfig

    torch.set_num_threads(1)  # the vLLM server shares the machine
    loaded = load(MODEL)
    engine = Engine(loaded, SteeringRegistry.from_dir(shipped_vectors(), loaded), max_batch=8)
    with TestClient(create_app(engine, ServerConfig(model_name=loaded.name))) as http:
        yield openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=http, max_retries=0)


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120)


def _chat(client: openai.OpenAI, prompt: str, model: str = MODEL, **kwargs: Any) -> Any:
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                          max_tokens=MAX_TOKENS, temperature=0, **kwargs)


def _steering(response: Any) -> dict[str, Any]:
    block = (response.model_extra or {}).get("steering")
    assert isinstance(block, dict), response
    return block


def test_greedy_warmth_zero_equals_the_hf_engine(vllm_server: str, hf_client: openai.OpenAI) -> None:
    ours = _client(vllm_server)
    for prompt in PROMPTS:
        v, h = (_chat(c, prompt, logprobs=True, top_logprobs=2) for c in (ours, hf_client))
        assert v.choices[0].message.content == h.choices[0].message.content, prompt
        assert [t.token for t in v.choices[0].logprobs.content] == [t.token for t in h.choices[0].logprobs.content]
        assert [[x.token for x in t.top_logprobs] for t in v.choices[0].logprobs.content] == \
            [[x.token for x in t.top_logprobs] for t in h.choices[0].logprobs.content]
        assert v.usage.prompt_tokens == h.usage.prompt_tokens
        assert v.usage.completion_tokens == h.usage.completion_tokens
        block = _steering(v)
        assert block["warmth"] == 0 and block["vectors"] == []
        assert block["monitor"] == _steering(h)["monitor"]
        assert math.isfinite(block["warmth_projection"])


def test_warmth_suffix_steers_and_reports_the_dial(vllm_server: str, hf_client: openai.OpenAI) -> None:
    ours = _client(vllm_server)
    cold, warm = _chat(ours, PROMPTS[0]), _chat(ours, PROMPTS[0], model=f"{MODEL}@warmth=1")
    assert warm.choices[0].message.content != cold.choices[0].message.content
    block = _steering(warm)
    hf_block = _steering(_chat(hf_client, PROMPTS[0], model=f"{MODEL}@warmth=1"))
    assert block["warmth"] == 1
    assert block["vectors"] == hf_block["vectors"]  # the dial's terms, resolved by the same registry
    assert {v["source"] for v in block["vectors"]} == {"dial"} and block["vectors"]
    assert math.isfinite(block["warmth_projection"])
    assert block["warmth_projection_per_choice"] == [pytest.approx(block["warmth_projection"])]
    ours_moves = block["warmth_projection"] - _steering(cold)["warmth_projection"]
    hf_moves = hf_block["warmth_projection"] - _steering(_chat(hf_client, PROMPTS[0]))["warmth_projection"]
    assert ours_moves * hf_moves > 0, (ours_moves, hf_moves)


def test_streaming_matches_the_whole_answer(vllm_server: str) -> None:
    ours = _client(vllm_server)
    whole = _chat(ours, PROMPTS[2], model=f"{MODEL}@warmth=1")
    chunks = list(_chat(ours, PROMPTS[2], model=f"{MODEL}@warmth=1", stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    last = _steering(chunks[-1])
    assert last["warmth"] == 1 and last["warmth_projection"] == pytest.approx(_steering(whole)["warmth_projection"])
    # a client that goes away mid-stream: its request is aborted in vLLM, and the server goes idle
    gone = ours.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPTS[0]}],
                                        max_tokens=2000, temperature=0, stream=True)
    next(iter(gone))
    gone.close()
    deadline = time.monotonic() + 30
    while _health(vllm_server)["running_rows"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _health(vllm_server)["running_rows"] == 0


def _health(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=10) as r:
        out: dict[str, Any] = json.loads(r.read())
    return out


def test_completions_echo_logprobs_and_seeded_choices(vllm_server: str, hf_client: openai.OpenAI) -> None:
    ours = _client(vllm_server)
    kwargs: dict[str, Any] = dict(model=MODEL, prompt="The capital of France is", max_tokens=6, temperature=0,
                                  echo=True, logprobs=2)
    v, h = ours.completions.create(**kwargs), hf_client.completions.create(**kwargs)
    assert v.choices[0].text == h.choices[0].text
    assert v.choices[0].logprobs.tokens == h.choices[0].logprobs.tokens
    assert v.choices[0].logprobs.text_offset == h.choices[0].logprobs.text_offset
    assert v.choices[0].logprobs.token_logprobs[0] is None
    for a, b in zip(v.choices[0].logprobs.token_logprobs[1:], h.choices[0].logprobs.token_logprobs[1:],
                    strict=True):
        assert a == pytest.approx(b, abs=1e-3)
    sampled = dict(model=MODEL, prompt="Once upon a time", max_tokens=8, temperature=1.0, seed=7, n=2)
    first, again = ours.completions.create(**sampled), ours.completions.create(**sampled)
    assert [c.text for c in first.choices] == [c.text for c in again.choices]  # seed + choice index, per choice
    assert len(first.choices) == 2 and first.usage.completion_tokens == 16


def test_unknown_vector_is_a_400_error_object_and_the_server_keeps_serving(vllm_server: str) -> None:
    ours = _client(vllm_server)
    with pytest.raises(openai.BadRequestError) as info:
        _chat(ours, PROMPTS[1], extra_body={"steering": {"vector": "no-such-vector", "coef": 0.1}})
    body = info.value.body
    assert isinstance(body, dict) and body.get("code") == "vector_not_found", body
    assert "no-such-vector" in str(body.get("message"))
    ok = _chat(ours, PROMPTS[1], extra_body={"steering": {"vector": "warm", "coef": 0.05}})
    assert ok.choices[0].message.content and _steering(ok)["vectors"][0]["source"] == "request"
    with urllib.request.urlopen(vllm_server.removesuffix("/v1") + "/metrics", timeout=10) as r:
        metrics = r.read().decode()
    assert 'steerwarm_requests_total{endpoint="/v1/chat/completions",status="400"}' in metrics
    generated = next(line for line in metrics.splitlines() if line.startswith("steerwarm_generated_tokens_total "))
    assert float(generated.split()[1]) > 0
