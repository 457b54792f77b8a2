"""`POST /v1/chat/completions`: a chat request made ready for the engine, and the engine's answers shaped as a
chat completion.

Invariant: the conversation is rendered by the model's own chat template (a `developer` message is a system
message), and choices come back in index order whatever order they finished in. A model without a chat template
answers chat requests with a 400 error object (code `no_chat_template`); its completions still work.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from steerwarm.model.chat import ChatTemplateError, chat_text
from steerwarm.serve.engine import (
    ChoiceDone,
    EngineRequest,
    PromptReady,
    SamplingParams,
    TokenInfo,
)
from steerwarm.serve.errors import APIError
from steerwarm.serve.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    ChatLogprobs,
    ChatTokenLogprob,
    TopLogprob,
)
from steerwarm.serve.server import Prepared, Server, finish_reason, parse


def chat_logprobs(infos: Sequence[TokenInfo]) -> ChatLogprobs:
    return ChatLogprobs(content=[
        ChatTokenLogprob(token=i.token, logprob=float(i.logprob or 0.0), bytes=i.bytes,
                         top_logprobs=[TopLogprob(token=t.token, logprob=t.logprob, bytes=t.bytes) for t in i.top])
        for i in infos
    ])


def prepare_chat(server: Server, body: bytes) -> Prepared:
    req = parse(ChatCompletionRequest, body)
    steering = server.steering_of(req)
    server.check_n(req.n)
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                for m in req.messages]
    try:
        text = chat_text(server.loaded, messages)
    except ChatTemplateError as exc:  # the server runs (completions work); chat needs a template
        raise APIError(400, f"{exc}; /v1/completions works without one", param="messages",
                       code="no_chat_template") from None
    ids = server.encode(text, special=False)
    max_tokens = server.max_tokens(req.token_limit(), len(ids), server.config.default_max_tokens, "messages")
    params = SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        stop=req.stop_list(), seed=req.seed,
        logprobs=(req.top_logprobs or 0) if req.logprobs else None,
    )
    er = EngineRequest(tuple(ids), params, steering, n=req.n, stream=req.stream)
    return Prepared("chat", req.model, steering, [er], req.n, req.stream,
                     bool(req.stream_options and req.stream_options.include_usage), False, req.logprobs)


def chat_response(server: Server, prep: Prepared, prompts: list[PromptReady | None], dones: dict[int, ChoiceDone]
                  ) -> ChatCompletion:
    ordered = [dones[i] for i in range(prep.n)]
    return ChatCompletion(
        id=f"chatcmpl-{uuid.uuid4().hex}", created=int(time.time()), model=prep.model,
        system_fingerprint=server.loaded.fingerprint,
        choices=[ChatChoice(index=i, message=AssistantMessage(content=d.text), finish_reason=finish_reason(d),
                            logprobs=chat_logprobs(d.logprobs) if d.logprobs is not None else None)
                 for i, d in enumerate(ordered)],
        usage=server.usage(prompts, ordered), steering=server.steering_info(prep.steering, ordered),
    )

