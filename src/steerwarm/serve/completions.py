"""`POST /v1/completions` (legacy completions): prompts (text or token ids) made ready for the engine, and the
engine's answers shaped as a text completion, with echo and logprobs.

Invariant: token ids are checked against the vocabulary before anything runs; text offsets of echoed
prompts and completions count from the start of the choice's text.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from steerwarm.serve.engine import (
    ChoiceDone,
    EngineRequest,
    PromptReady,
    SamplingParams,
    TokenInfo,
)
from steerwarm.serve.errors import APIError
from steerwarm.serve.protocol import (
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
)
from steerwarm.serve.server import Prepared, Server, finish_reason, parse


def completion_logprobs(parts: Sequence[tuple[Sequence[TokenInfo], int]]) -> CompletionLogprobs:
    out = CompletionLogprobs(tokens=[], token_logprobs=[], top_logprobs=[], text_offset=[])
    for infos, base in parts:
        for i in infos:
            out.tokens.append(i.token)
            out.token_logprobs.append(i.logprob)
            if i.logprob is None:
                out.top_logprobs.append(None)
            else:
                top = {t.token: t.logprob for t in i.top}
                top.setdefault(i.token, i.logprob)
                out.top_logprobs.append(top)
            out.text_offset.append(base + i.offset)
    return out


def prepare_completion(server: Server, body: bytes) -> Prepared:
    req = parse(CompletionRequest, body)
    steering = server.steering_of(req)
    server.check_n(req.n)
    prompts: list[list[int]] = []
    items: list[Any] = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
    if items and all(isinstance(x, int) for x in items):
        items = [items]  # one prompt given as token ids
    for x in items:
        prompts.append(server.encode(x, special=True) if isinstance(x, str) else [int(t) for t in x])
    if not prompts:
        raise APIError(400, "prompt is an empty list; send a string, a list of strings or token ids",
                       param="prompt", code="invalid_value")
    vocab = int(server.loaded.model.config.vocab_size)
    for i, ids in enumerate(prompts):
        if not ids:
            raise APIError(400, "the prompt is empty (no tokens); send some text", param="prompt",
                           code="invalid_value")
        bad = [t for t in ids if not 0 <= t < vocab]
        if bad:
            raise APIError(400, f"prompt {i} has token ids outside the vocabulary [0, {vocab}): {bad[:5]}",
                           param="prompt", code="invalid_value")
    if len(prompts) * req.n > 16 * server.engine.max_batch:
        raise APIError(400, f"{len(prompts)} prompts x n={req.n} is too many for one request; split it",
                       param="prompt", code="invalid_value")
    reqs = []
    for ids in prompts:
        max_tokens = server.max_tokens(req.max_tokens, len(ids), server.config.completion_default_max_tokens,
                                      "prompt")
        params = SamplingParams(
            max_tokens=max_tokens,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            stop=req.stop_list(), seed=req.seed, logprobs=req.logprobs,
        )
        reqs.append(EngineRequest(tuple(ids), params, steering, n=req.n, stream=req.stream, echo=req.echo,
                                  prompt_logprobs=req.logprobs if req.echo else None))
    return Prepared("completion", req.model, steering, reqs, req.n, req.stream,
                     bool(req.stream_options and req.stream_options.include_usage), req.echo,
                     req.logprobs is not None)


def completion_response(server: Server, prep: Prepared, prompts: list[PromptReady | None], dones: dict[int, ChoiceDone]
                        ) -> Completion:
    ordered = [dones[i] for i in range(len(prep.requests) * prep.n)]
    choices = []
    for i, d in enumerate(ordered):
        pr = prompts[i // prep.n]
        head = pr.text if prep.echo and pr is not None and pr.text is not None else ""
        lp = None
        if prep.logprobs:
            parts: list[tuple[Sequence[TokenInfo], int]] = []
            if prep.echo and pr is not None and pr.logprobs is not None:
                parts.append((pr.logprobs, 0))
            parts.append((d.logprobs or (), len(head)))
            lp = completion_logprobs(parts)
        choices.append(CompletionChoice(index=i, text=head + d.text, logprobs=lp, finish_reason=finish_reason(d)))
    return Completion(id=f"cmpl-{uuid.uuid4().hex}", created=int(time.time()), model=prep.model,
                      system_fingerprint=server.loaded.fingerprint, choices=choices,
                      usage=server.usage(prompts, ordered), steering=server.steering_info(prep.steering, ordered))

