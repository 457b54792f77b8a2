"""Server-sent events for both completion endpoints: chunks as the engine's deltas arrive, then usage and the
`steering` block, then `[DONE]`.

Invariants: a stream that ends early (client gone, server stopping) cancels its requests in the engine; a
generation failure (or a request cut at the end of a drain, see `Server.cut_inflight`) becomes an error event followed
by `[DONE]`; the last chunk carries the `steering` block.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from steerwarm.serve.chat import chat_logprobs
from steerwarm.serve.completions import completion_logprobs
from steerwarm.serve.engine import (
    ChoiceDone,
    Delta,
    Failed,
    Handle,
    PromptReady,
)
from steerwarm.serve.errors import APIError
from steerwarm.serve.protocol import (
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatDelta,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    dump_chunk,
)
from steerwarm.serve.server import Bridge, Prepared, Server, finish_reason


async def stream(server: Server, prep: Prepared, bridge: Bridge, handles: Sequence[Handle]) -> AsyncIterator[str]:
    rid = (f"chatcmpl-{uuid.uuid4().hex}" if prep.kind == "chat" else f"cmpl-{uuid.uuid4().hex}")
    created = int(time.time())
    fp = server.loaded.fingerprint
    total = len(prep.requests) * prep.n
    prompts: list[PromptReady | None] = [None] * len(prep.requests)
    dones: dict[int, ChoiceDone] = {}
    complete = False

    def chat_chunk(choices: list[ChatChunkChoice], **extra: Any) -> str:
        return dump_chunk(ChatCompletionChunk(id=rid, created=created, model=prep.model, system_fingerprint=fp,
                                              choices=choices, **extra))

    def text_chunk(index: int, text: str, lp: CompletionLogprobs | None, reason: str | None,
                   **extra: Any) -> str:
        choice = CompletionChoice(index=index, text=text, logprobs=lp, finish_reason=reason)  # type: ignore[arg-type]
        return dump_chunk(Completion(id=rid, created=created, model=prep.model, system_fingerprint=fp,
                                     choices=[choice], **extra))

    try:
        if prep.kind == "chat":
            for c in range(prep.n):
                yield chat_chunk([ChatChunkChoice(index=c, delta=ChatDelta(role="assistant", content=""))])
        while len(dones) < total:
            k, ev = await bridge.queue.get()
            if isinstance(ev, Failed):
                err = APIError(ev.status, ev.message, code=ev.code)
                yield f"data: {json.dumps(err.body())}\n\n"
                yield "data: [DONE]\n\n"
                complete = True
                return
            if isinstance(ev, PromptReady):
                prompts[k] = ev
                if prep.echo and ev.text is not None:
                    lp = completion_logprobs([(ev.logprobs, 0)]) if ev.logprobs is not None else None
                    for c in range(prep.n):
                        yield text_chunk(k * prep.n + c, ev.text, lp, None)
                continue
            index = k * prep.n + ev.choice
            if isinstance(ev, Delta):
                if prep.kind == "chat":
                    yield chat_chunk([ChatChunkChoice(
                        index=index, delta=ChatDelta(content=ev.text),
                        logprobs=chat_logprobs(ev.logprobs) if prep.logprobs else None)])
                else:
                    base = stream_base(prompts[k], prep)
                    lp = completion_logprobs([(ev.logprobs, base)]) if prep.logprobs else None
                    yield text_chunk(index, ev.text, lp, None)
                continue
            dones[index] = ev
            extra: dict[str, Any] = {}
            if len(dones) == total and not prep.include_usage:
                extra["steering"] = server.steering_info(prep.steering, [dones[i] for i in range(total)])
            reason = finish_reason(ev)
            if prep.kind == "chat":
                yield chat_chunk([ChatChunkChoice(
                    index=index, delta=ChatDelta(content=ev.tail or None), finish_reason=reason,
                    logprobs=chat_logprobs(ev.tail_logprobs) if prep.logprobs else None)], **extra)
            else:
                base = stream_base(prompts[k], prep)
                lp = completion_logprobs([(ev.tail_logprobs, base)]) if prep.logprobs else None
                yield text_chunk(index, ev.tail, lp, reason, **extra)
        ordered = [dones[i] for i in range(total)]
        usage = server.usage(prompts, ordered)
        if prep.include_usage:
            info = server.steering_info(prep.steering, ordered)
            if prep.kind == "chat":
                yield chat_chunk([], usage=usage, steering=info)
            else:
                yield dump_chunk(Completion(id=rid, created=created, model=prep.model, system_fingerprint=fp,
                                            choices=[], usage=usage, steering=info))
        yield "data: [DONE]\n\n"
        complete = True
    finally:
        server.release(bridge)
        if not complete:
            for h in handles:
                h.cancel()


def stream_base(prompt: PromptReady | None, prep: Prepared) -> int:
    # completion-stream text offsets count from the start of the choice's text (the echoed prompt, if any)
    return len(prompt.text) if prep.echo and prompt is not None and prompt.text is not None else 0

