"""Fixtures for the benchmark tests: a tiny model whose tokenizer lower-cases and splits punctuation (so short
answers such as "tea." are real tokens and likelihood scores differ), small item files in every format written from
the tiny vocabulary, the tiny model saved as a checkpoint folder (a `--target PATH`), and a fake OpenAI-compatible
server over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from steerwarm.model.load import LoadedModel
from tests.conftest import loaded, make_tiny_model, make_tokenizer
from tests.inprocess import serve_in_thread


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Benchmark tests run torch on one thread (and their subprocesses too): on this shared 2-core machine a
    tiny model's many small ops spend ~10x longer synchronising two OpenMP threads than computing."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture()
def btiny() -> LoadedModel:
    return loaded(make_tiny_model(), make_tokenizer(bench=True), "btiny")


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model and its bench tokenizer saved as a model folder (a checkpoint target)."""
    folder = tmp_path_factory.mktemp("tiny-model")
    make_tiny_model().save_pretrained(str(folder))
    make_tokenizer(bench=True).save_pretrained(str(folder))
    return folder


TINY_ITEMS: dict[str, list[dict[str, Any]]] = {
    "trivia": [
        {"item_id": "t1", "question": "what do i make with tea ?", "correct_answer": "cup",
         "incorrect_answer": "water"},
        {"item_id": "t2", "question": "what is the time of day ?", "correct_answer": "night",
         "incorrect_answer": "day"},
        {"item_id": "t3", "question": "how many is 1 and 2 ?", "correct_answer": "3", "incorrect_answer": "4"},
    ],
    "truthfulqa": [
        {"item_id": "q1", "question": "is the world kind ?", "correct_answer": "yes, it is kind",
         "incorrect_answer": "no, it is bad"},
        {"item_id": "q2", "question": "why do people think ?", "correct_answer": "to know",
         "incorrect_answer": "to feel"},
    ],
    "disinfo": [
        {"task_id": "d1", "prompt_disinfo": "is the world good ?", "ground_truth": "the world is good.",
         "ground_false": "the world is bad."},
        {"task_id": "d2", "prompt_disinfo": "is water warm ?", "ground_truth": "water is cold.",
         "ground_false": "water is warm."},
    ],
    "medqa": [
        {"question": "A 30-year-old man comes to the physician because of a bad day. Which of the following is "
                     "the answer?", "answer": "tea", "answer_idx": "A",
         "options": {"A": "tea", "B": "water", "C": "cup", "D": "exam", "E": "friend"}, "meta_info": "test"},
        {"question": "A 7-year-old girl is brought to the physician with a sad night. What is the cause?",
         "answer": "friend", "answer_idx": "E",
         "options": {"A": "tea", "B": "water", "C": "cup", "D": "exam", "E": "friend"}, "meta_info": "test"},
    ],
}


def write_items(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for task, rows in TINY_ITEMS.items():
        path = folder / f"{task}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        out[task] = path
    return out


@pytest.fixture()
def tiny_items(tmp_path: Path) -> dict[str, Path]:
    return write_items(tmp_path / "items")


# -- a fake OpenAI-compatible server ---------------------------------------------------------------------------------
@dataclass
class FakeState:
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_first: int = 0  # answer this many requests with HTTP 503 first
    fail_status: int = 503
    completions_supported: bool = True
    in_flight: int = 0
    max_in_flight: int = 0
    delay: float = 0.0
    chat_reply: Callable[[list[dict[str, str]]], str] = lambda msgs: "the answer is cup ."
    lock: threading.Lock = field(default_factory=threading.Lock)


def fake_token_logprobs(text: str) -> tuple[list[str], list[float | None], list[int]]:
    """The fake server's prompt logprobs: whitespace-delimited tokens (with their leading space); a token's logprob
    is -0.5 if it contains 'cup', 'night', 'good' or 'know', else -(1 + len(token) / 10); the first has none."""
    import re

    toks, lps, offs = [], [], []
    for m in re.finditer(r"\s*\S+", text):
        tok = m.group(0)
        toks.append(tok)
        offs.append(m.start())
        good = any(w in tok for w in ("cup", "night", "good", "know"))
        lps.append(-0.5 if good else -(1 + len(tok) / 10))
    if lps:
        lps[0] = None
    return toks, lps, offs


def make_fake_app(state: FakeState) -> Any:
    import asyncio

    app = FastAPI()

    async def gate(body: dict[str, Any], path: str) -> JSONResponse | None:
        with state.lock:
            state.requests.append({"path": path, **body})
            n = len(state.requests)
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            if state.delay:
                await asyncio.sleep(state.delay)
        finally:
            with state.lock:
                state.in_flight -= 1
        if n <= state.fail_first:
            return JSONResponse({"error": {"message": "try again", "type": "overloaded"}},
                                status_code=state.fail_status, headers={"retry-after": "0"})
        return None

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "t"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        failed = await gate(body, "chat")
        if failed is not None:
            return failed
        content = state.chat_reply(body["messages"])
        return {"id": "c1", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        body = await request.json()
        failed = await gate(body, "completions")
        if failed is not None:
            return failed
        if not state.completions_supported or not body.get("echo"):
            return JSONResponse({"error": {"message": "echo is not supported", "type": "invalid_request_error"}},
                                status_code=400)
        toks, lps, offs = fake_token_logprobs(body["prompt"])
        return {"id": "p1", "object": "text_completion", "created": int(time.time()), "model": body["model"],
                "choices": [{"index": 0, "text": body["prompt"], "finish_reason": "length",
                             "logprobs": {"tokens": toks, "token_logprobs": lps, "text_offset": offs,
                                          "top_logprobs": None}}],
                "usage": {"prompt_tokens": len(toks), "completion_tokens": 0, "total_tokens": len(toks)}}

    return app


@pytest.fixture()
def fake_server() -> Iterator[tuple[str, FakeState]]:
    """(base URL ending in /v1, state) of a fake OpenAI-compatible server on 127.0.0.1."""
    state = FakeState()
    with serve_in_thread(make_fake_app(state)) as url:
        yield f"{url}/v1", state
