"""Fault isolation over HTTP: a fault injected into one request's sampling, on a real server (in-process, so the
fault can be patched in) with the tiny model, fails that request alone with a 500 error object (a final error event
when streaming) while the requests batched with it are answered as they are alone; /metrics counts it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest
import torch
from openai import OpenAI

import steerwarm.serve.engine as engine_mod
from steerwarm.serve.engine import Engine
from steerwarm.serve.registry import SteeringRegistry
from steerwarm.serve.routes import create_app
from steerwarm.serve.server import ServerConfig
from tests.conftest import loaded, make_tiny_model, make_tokenizer
from tests.inprocess import serve_in_thread

PROMPTS = ["i feel sad today", "what is the answer to this question ?", "make me a cup of tea please"]
POISON = 0.7  # requests sampled at this temperature fail in their own sampling


def test_a_fault_in_one_request_is_its_own_500_and_the_batch_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = loaded(make_tiny_model(layers=3), make_tokenizer(), "tiny")
    registry = SteeringRegistry({}, None, dial_note="no dial in this test", num_layers=tiny.num_layers)
    engine = Engine(tiny, registry, max_batch=8)
    real_sample = engine_mod._sample

    def sample(logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator | None) -> int:
        if temperature == POISON:
            raise RuntimeError("injected sampling fault")
        return real_sample(logits, temperature, top_p, gen)

    monkeypatch.setattr(engine_mod, "_sample", sample)
    with serve_in_thread(create_app(engine, ServerConfig(model_name="tiny")), lifespan="on") as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)

        def ask(prompt: str, temperature: float = 0.0, **kw: Any) -> Any:
            return client.completions.create(model="tiny", prompt=prompt, max_tokens=24, temperature=temperature,
                                             seed=1, **kw)

        alone = [ask(p).choices[0].text for p in PROMPTS]
        with ThreadPoolExecutor(4) as pool:
            good = [pool.submit(ask, p) for p in PROMPTS]
            bad = pool.submit(ask, PROMPTS[0], POISON)
            with pytest.raises(openai.InternalServerError) as info:
                bad.result()
            together = [f.result().choices[0].text for f in good]
        assert together == alone
        err = info.value.body
        assert isinstance(err, dict) and err["code"] == "generation_failed", err
        assert "(sampling)" in err["message"] and "injected sampling fault" in err["message"]

        with pytest.raises(openai.APIError, match=r"\(sampling\)"):  # streamed: a final error event
            for _ in ask(PROMPTS[1], POISON, stream=True):
                pass
        assert ask(PROMPTS[2]).choices[0].text == alone[2]
        metrics = httpx.get(f"{url}/metrics").text
        assert "steerwarm_row_failures_total 2" in metrics and "steerwarm_step_failures_total 0" in metrics
        assert 'steerwarm_requests_total{endpoint="/v1/completions",status="500"} 1' in metrics
