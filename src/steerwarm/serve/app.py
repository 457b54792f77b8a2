"""FastAPI app: OpenAI-compatible routes over the batching engine, with errors as OpenAI error objects, an optional
API key, a body size limit and Prometheus metrics.

Invariants:
- Handlers are thin: parse (protocol.py) -> resolve model, steering, tokens and limits -> submit to the engine ->
  shape the engine's events into OpenAI responses. All model work happens on the engine thread.
- Every client-caused failure is an `APIError` rendered as `{"error": {...}}` with its status (400, 401, 404, 413,
  429); anything unexpected is a 500 error object. No request can leave the server unable to serve the next one.
- With an API key configured, every route but /health needs `Authorization: Bearer <key>`, compared in constant
  time (`hmac.compare_digest`).
- A request whose client goes away is cancelled in the engine: streaming responses are cancelled by the ASGI server
  on disconnect; non-streaming handlers watch the connection while they wait.
- Every response (and the last chunk of every stream) carries the `steering` block.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from steerwarm.model.chat import chat_text
from steerwarm.model.load import canonical_name
from steerwarm.serve.engine import (
    ChoiceDone,
    Delta,
    Engine,
    EngineRequest,
    Event,
    Failed,
    Handle,
    PromptReady,
    QueueFullError,
    SamplingParams,
    TokenInfo,
)
from steerwarm.serve.errors import APIError
from steerwarm.serve.metrics import Metrics
from steerwarm.serve.protocol import (
    AppliedVector,
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    ChatLogprobs,
    ChatTokenLogprob,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    DialInfo,
    ModelCard,
    ModelExtras,
    ModelList,
    MonitorInfo,
    SteeringInfo,
    TopLogprob,
    Usage,
    dump_chunk,
    split_model,
)
from steerwarm.serve.registry import RowSteering
from steerwarm.steer.dial import DIAL_RANGE

log = logging.getLogger("steerwarm.serve")
M = TypeVar("M", bound=BaseModel)
ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics")


@dataclass(frozen=True)
class ServerConfig:
    model_name: str
    api_key: str | None = None
    max_body_bytes: int = 1 << 20
    default_max_tokens: int = 1024  # chat completions without max_tokens (clamped to the context left)
    completion_default_max_tokens: int = 16  # legacy completions default, as OpenAI's


class _ClientGone(Exception):
    pass


class _Bridge:
    """Carries engine events (worker thread) into the event loop, tagged with the prompt they belong to."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[tuple[int, Event]] = asyncio.Queue()

    def sink(self, k: int) -> Callable[[Event], None]:
        def put(event: Event) -> None:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (k, event))

        return put


@dataclass
class _Prepared:
    """A validated request, ready for the engine."""

    kind: str  # "chat" or "completion"
    model: str
    steering: RowSteering
    requests: list[EngineRequest]
    n: int
    stream: bool
    include_usage: bool
    echo: bool
    logprobs: bool


def _param(loc: Sequence[int | str]) -> str | None:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("_", "").isalnum() and part.islower() and part not in ("str", "int", "float", "bool"):
            out += ("." if out else "") + part
    return out or None


def _validation_error(exc: ValidationError) -> APIError:
    err = exc.errors()[0]
    kind, loc, msg = err["type"], err["loc"], err["msg"]
    param = _param(loc)
    if kind == "json_invalid":
        return APIError(400, f"malformed JSON body ({msg}); send one JSON object", code="invalid_json")
    if kind in ("model_type", "model_attributes_type") and not loc:
        return APIError(400, "the request body must be a JSON object", code="invalid_json")
    if kind == "extra_forbidden":
        return APIError(400, f"unknown parameter '{param}': this server does not accept it; remove it",
                        param=param, code="unknown_parameter")
    if kind == "missing":
        return APIError(400, f"missing required parameter '{param}'", param=param, code="missing_required_parameter")
    if kind == "unsupported_parameter":
        return APIError(400, msg, param=param, code="unsupported_parameter")
    code = "invalid_type" if kind.endswith("_type") or kind.endswith("_parsing") else "invalid_value"
    where = f"'{param}'" if param else "the request"
    return APIError(400, f"invalid value for {where}: {msg}", param=param, code=code)


def _parse(model: type[M], body: bytes) -> M:
    if not body.strip():
        raise APIError(400, "the request body is empty; send a JSON object", code="invalid_json")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise _validation_error(exc) from None


def _chat_logprobs(infos: Sequence[TokenInfo]) -> ChatLogprobs:
    return ChatLogprobs(content=[
        ChatTokenLogprob(token=i.token, logprob=float(i.logprob or 0.0), bytes=i.bytes,
                         top_logprobs=[TopLogprob(token=t.token, logprob=t.logprob, bytes=t.bytes) for t in i.top])
        for i in infos
    ])


def _completion_logprobs(parts: Sequence[tuple[Sequence[TokenInfo], int]]) -> CompletionLogprobs:
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


class _BodyReader:
    def __init__(self, limit: int) -> None:
        self.limit = limit

    async def read(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            raise self._too_large()
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.limit:
                raise self._too_large()
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self) -> APIError:
        return APIError(413, f"request body exceeds {self.limit} bytes; send a smaller request (or start the "
                        "server with a larger --max-body-bytes)", code="request_too_large")


class Server:
    """The routes' logic, bound to one engine."""

    def __init__(self, engine: Engine, config: ServerConfig, metrics: Metrics | None = None) -> None:
        self.engine = engine
        self.loaded = engine.loaded
        self.registry = engine.registry
        self.config = config
        self.metrics = metrics or Metrics()
        self.created = int(time.time())
        self.body = _BodyReader(config.max_body_bytes)
        self.served = canonical_name(config.model_name)
        m = self.metrics
        m.gauge("steerwarm_queue_depth", "Requests waiting to join the batch.", lambda: engine.queue_depth)
        m.gauge("steerwarm_running_rows", "Sequences in the running batch.", lambda: engine.running_rows)
        m.gauge("steerwarm_last_step_batch_size", "Rows decoded by the last step.", lambda: engine.last_batch)
        m.counter("steerwarm_decode_steps_total", "Batched decode steps.", lambda: engine.steps)
        m.counter("steerwarm_prefills_total", "Prefill forward passes.", lambda: engine.prefills)
        m.counter("steerwarm_generated_tokens_total", "Tokens sampled (including cancelled requests).",
                  lambda: engine.generated_tokens)

    # -- helpers --------------------------------------------------------------------------------------------------
    def check_auth(self, request: Request) -> None:
        key = self.config.api_key
        if not key:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise APIError(401, "missing API key: send the header 'Authorization: Bearer <key>'",
                           code="invalid_api_key")
        if not hmac.compare_digest(token.strip().encode(), key.encode()):
            raise APIError(401, "incorrect API key provided", code="invalid_api_key")

    def _model_warmth(self, model: str) -> float | None:
        base, warmth = split_model(model)
        if canonical_name(base) != self.served:
            raise APIError(404, f"the model {base!r} does not exist: this server serves {self.served!r} "
                           "(GET /v1/models); a warmth can be added as a suffix, e.g. "
                           f"'{self.served}@warmth=0.5'", param="model", code="model_not_found")
        return warmth

    def _steering(self, req: ChatCompletionRequest | CompletionRequest) -> RowSteering:
        suffix = self._model_warmth(req.model)
        if suffix is not None and req.warmth is not None and suffix != req.warmth:
            raise APIError(400, f"warmth is given twice and disagrees: {req.warmth} in the body, {suffix} in the "
                           "model name; send one", param="warmth", code="conflicting_warmth")
        warmth = req.warmth if req.warmth is not None else (suffix or 0.0)
        raw = [(s.vector, s.layers, s.coef) for s in req.steering_list()]
        return self.registry.resolve(warmth, raw)

    def _encode(self, text: str, *, special: bool) -> list[int]:
        with self.engine.tokenizer_lock:
            ids = self.loaded.tokenizer(text, add_special_tokens=special)["input_ids"]
        return [int(x) for x in ids]

    def _max_tokens(self, asked: int | None, prompt_len: int, default: int, prompt_param: str) -> int:
        ctx = self.engine.context_length
        if prompt_len >= ctx:
            raise APIError(400, f"the prompt is {prompt_len} tokens but the model's context is {ctx} tokens; "
                           "shorten the prompt", param=prompt_param, code="context_length_exceeded")
        if asked is None:
            return min(default, ctx - prompt_len)
        if prompt_len + asked > ctx:
            raise APIError(400, f"prompt ({prompt_len} tokens) + max_tokens ({asked}) = {prompt_len + asked} "
                           f"exceeds the model's context of {ctx} tokens; lower max_tokens to at most "
                           f"{ctx - prompt_len} or shorten the prompt", param="max_tokens",
                           code="context_length_exceeded")
        return asked

    def _check_n(self, n: int) -> None:
        if n > self.engine.max_batch:
            raise APIError(400, f"n={n} exceeds this server's batch size {self.engine.max_batch}; lower n",
                           param="n", code="invalid_value")

    def prepare_chat(self, body: bytes) -> _Prepared:
        req = _parse(ChatCompletionRequest, body)
        steering = self._steering(req)
        self._check_n(req.n)
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                    for m in req.messages]
        ids = self._encode(chat_text(self.loaded, messages), special=False)
        max_tokens = self._max_tokens(req.token_limit(), len(ids), self.config.default_max_tokens, "messages")
        params = SamplingParams(
            max_tokens=max_tokens,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            stop=req.stop_list(), seed=req.seed,
            logprobs=(req.top_logprobs or 0) if req.logprobs else None,
        )
        er = EngineRequest(tuple(ids), params, steering, n=req.n, stream=req.stream)
        return _Prepared("chat", req.model, steering, [er], req.n, req.stream,
                         bool(req.stream_options and req.stream_options.include_usage), False, req.logprobs)

    def prepare_completion(self, body: bytes) -> _Prepared:
        req = _parse(CompletionRequest, body)
        steering = self._steering(req)
        self._check_n(req.n)
        prompts: list[list[int]] = []
        items: list[Any] = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
        if items and all(isinstance(x, int) for x in items):
            items = [items]  # one prompt given as token ids
        for x in items:
            prompts.append(self._encode(x, special=True) if isinstance(x, str) else [int(t) for t in x])
        if not prompts:
            raise APIError(400, "prompt is an empty list; send a string, a list of strings or token ids",
                           param="prompt", code="invalid_value")
        vocab = int(self.loaded.model.config.vocab_size)
        for i, ids in enumerate(prompts):
            if not ids:
                raise APIError(400, "the prompt is empty (no tokens); send some text", param="prompt",
                               code="invalid_value")
            bad = [t for t in ids if not 0 <= t < vocab]
            if bad:
                raise APIError(400, f"prompt {i} has token ids outside the vocabulary [0, {vocab}): {bad[:5]}",
                               param="prompt", code="invalid_value")
        if len(prompts) * req.n > 16 * self.engine.max_batch:
            raise APIError(400, f"{len(prompts)} prompts x n={req.n} is too many for one request; split it",
                           param="prompt", code="invalid_value")
        reqs = []
        for ids in prompts:
            max_tokens = self._max_tokens(req.max_tokens, len(ids), self.config.completion_default_max_tokens,
                                          "prompt")
            params = SamplingParams(
                max_tokens=max_tokens,
                temperature=1.0 if req.temperature is None else req.temperature,
                top_p=1.0 if req.top_p is None else req.top_p,
                stop=req.stop_list(), seed=req.seed, logprobs=req.logprobs,
            )
            reqs.append(EngineRequest(tuple(ids), params, steering, n=req.n, stream=req.stream, echo=req.echo,
                                      prompt_logprobs=req.logprobs if req.echo else None))
        return _Prepared("completion", req.model, steering, reqs, req.n, req.stream,
                         bool(req.stream_options and req.stream_options.include_usage), req.echo,
                         req.logprobs is not None)

    def steering_info(self, steering: RowSteering, dones: Sequence[ChoiceDone]) -> SteeringInfo:
        mon = self.registry.monitor
        per_choice: list[float | None] = [
            d.projection_sum / d.projection_count if mon is not None and d.projection_count else None for d in dones]
        count = sum(d.projection_count for d in dones)
        mean = sum(d.projection_sum for d in dones) / count if mon is not None and count else None
        return SteeringInfo(
            warmth=steering.warmth,
            vectors=[AppliedVector.model_validate(v) for v in self.registry.applied(steering)],
            warmth_projection=mean, warmth_projection_per_choice=per_choice,
            monitor=MonitorInfo(vector=mon.vector, layer=mon.layer) if mon is not None else None,
        )

    def submit(self, prep: _Prepared) -> tuple[_Bridge, list[Handle]]:
        bridge = _Bridge(asyncio.get_running_loop())
        try:
            handles = self.engine.submit(prep.requests, [bridge.sink(k) for k in range(len(prep.requests))])
        except QueueFullError as exc:
            raise APIError(429, str(exc), code="queue_full") from None
        except ValueError as exc:
            raise APIError(400, str(exc), code="invalid_value") from None
        return bridge, handles

    # -- non-streaming --------------------------------------------------------------------------------------------
    async def collect(self, request: Request, prep: _Prepared, bridge: _Bridge, handles: Sequence[Handle]
                      ) -> tuple[list[PromptReady | None], dict[int, ChoiceDone]]:
        prompts: list[PromptReady | None] = [None] * len(prep.requests)
        dones: dict[int, ChoiceDone] = {}
        total = len(prep.requests) * prep.n
        watcher = asyncio.ensure_future(_wait_disconnect(request))
        try:
            while len(dones) < total:
                getter = asyncio.ensure_future(bridge.queue.get())
                finished, _ = await asyncio.wait({getter, watcher}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in finished:
                    getter.cancel()
                    raise _ClientGone()
                k, ev = getter.result()
                if isinstance(ev, Failed):
                    raise APIError(500, ev.message, code="generation_failed")
                if isinstance(ev, PromptReady):
                    prompts[k] = ev
                elif isinstance(ev, ChoiceDone):
                    dones[k * prep.n + ev.choice] = ev
        finally:
            watcher.cancel()
            if len(dones) < total:
                for h in handles:
                    h.cancel()
        return prompts, dones

    def usage(self, prompts: Sequence[PromptReady | None], dones: Sequence[ChoiceDone]) -> Usage:
        p = sum(x.prompt_tokens for x in prompts if x is not None)
        c = sum(d.completion_tokens for d in dones)
        self.metrics.add_tokens(p, c)
        return Usage(prompt_tokens=p, completion_tokens=c, total_tokens=p + c)

    def chat_response(self, prep: _Prepared, prompts: list[PromptReady | None], dones: dict[int, ChoiceDone]
                      ) -> ChatCompletion:
        ordered = [dones[i] for i in range(prep.n)]
        return ChatCompletion(
            id=f"chatcmpl-{uuid.uuid4().hex}", created=int(time.time()), model=prep.model,
            system_fingerprint=self.loaded.fingerprint,
            choices=[ChatChoice(index=i, message=AssistantMessage(content=d.text), finish_reason=_reason(d),
                                logprobs=_chat_logprobs(d.logprobs) if d.logprobs is not None else None)
                     for i, d in enumerate(ordered)],
            usage=self.usage(prompts, ordered), steering=self.steering_info(prep.steering, ordered),
        )

    def completion_response(self, prep: _Prepared, prompts: list[PromptReady | None], dones: dict[int, ChoiceDone]
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
                lp = _completion_logprobs(parts)
            choices.append(CompletionChoice(index=i, text=head + d.text, logprobs=lp, finish_reason=_reason(d)))
        return Completion(id=f"cmpl-{uuid.uuid4().hex}", created=int(time.time()), model=prep.model,
                          system_fingerprint=self.loaded.fingerprint, choices=choices,
                          usage=self.usage(prompts, ordered), steering=self.steering_info(prep.steering, ordered))

    # -- streaming ------------------------------------------------------------------------------------------------
    async def stream(self, prep: _Prepared, bridge: _Bridge, handles: Sequence[Handle]) -> AsyncIterator[str]:
        rid = (f"chatcmpl-{uuid.uuid4().hex}" if prep.kind == "chat" else f"cmpl-{uuid.uuid4().hex}")
        created = int(time.time())
        fp = self.loaded.fingerprint
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
                    err = APIError(500, ev.message, code="generation_failed")
                    yield f"data: {json.dumps(err.body())}\n\n"
                    yield "data: [DONE]\n\n"
                    complete = True
                    return
                if isinstance(ev, PromptReady):
                    prompts[k] = ev
                    if prep.echo and ev.text is not None:
                        lp = _completion_logprobs([(ev.logprobs, 0)]) if ev.logprobs is not None else None
                        for c in range(prep.n):
                            yield text_chunk(k * prep.n + c, ev.text, lp, None)
                    continue
                index = k * prep.n + ev.choice
                if isinstance(ev, Delta):
                    if prep.kind == "chat":
                        yield chat_chunk([ChatChunkChoice(
                            index=index, delta=ChatDelta(content=ev.text),
                            logprobs=_chat_logprobs(ev.logprobs) if prep.logprobs else None)])
                    else:
                        base = self._stream_base(prompts[k], prep)
                        lp = _completion_logprobs([(ev.logprobs, base)]) if prep.logprobs else None
                        yield text_chunk(index, ev.text, lp, None)
                    continue
                dones[index] = ev
                extra: dict[str, Any] = {}
                if len(dones) == total and not prep.include_usage:
                    extra["steering"] = self.steering_info(prep.steering, [dones[i] for i in range(total)])
                reason = _reason(ev)
                if prep.kind == "chat":
                    yield chat_chunk([ChatChunkChoice(
                        index=index, delta=ChatDelta(content=ev.tail or None), finish_reason=reason,
                        logprobs=_chat_logprobs(ev.tail_logprobs) if prep.logprobs else None)], **extra)
                else:
                    base = self._stream_base(prompts[k], prep)
                    lp = _completion_logprobs([(ev.tail_logprobs, base)]) if prep.logprobs else None
                    yield text_chunk(index, ev.tail, lp, reason, **extra)
            ordered = [dones[i] for i in range(total)]
            usage = self.usage(prompts, ordered)
            if prep.include_usage:
                info = self.steering_info(prep.steering, ordered)
                if prep.kind == "chat":
                    yield chat_chunk([], usage=usage, steering=info)
                else:
                    yield dump_chunk(Completion(id=rid, created=created, model=prep.model, system_fingerprint=fp,
                                                choices=[], usage=usage, steering=info))
            yield "data: [DONE]\n\n"
            complete = True
        finally:
            if not complete:
                for h in handles:
                    h.cancel()

    @staticmethod
    def _stream_base(prompt: PromptReady | None, prep: _Prepared) -> int:
        # completion-stream text offsets count from the start of the choice's text (the echoed prompt, if any)
        return len(prompt.text) if prep.echo and prompt is not None and prompt.text is not None else 0

    # -- route bodies ---------------------------------------------------------------------------------------------
    async def complete(self, request: Request, kind: str) -> Response:
        body = await self.body.read(request)
        prep = self.prepare_chat(body) if kind == "chat" else self.prepare_completion(body)
        bridge, handles = self.submit(prep)
        if prep.stream:
            return StreamingResponse(self.stream(prep, bridge, handles), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            prompts, dones = await self.collect(request, prep, bridge, handles)
        except _ClientGone:
            return Response(status_code=499)
        result = self.chat_response(prep, prompts, dones) if kind == "chat" else \
            self.completion_response(prep, prompts, dones)
        return JSONResponse(result.model_dump(mode="json"))

    def model_card(self) -> ModelCard:
        reg = self.registry
        dial = DialInfo(enabled=reg.dial is not None, range=DIAL_RANGE,
                        warm="warm" if reg.dial is not None else None,
                        cold="cold" if reg.dial is not None and reg.dial.cold is not None else None,
                        note=reg.dial_note)
        extras = ModelExtras(fingerprint=self.loaded.fingerprint, context_length=self.engine.context_length,
                             vectors={name: list(v.layers) for name, v in sorted(reg.vectors.items())}, dial=dial)
        return ModelCard(id=self.served, created=self.created, steerwarm=extras)


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _reason(done: ChoiceDone) -> Any:
    return done.finish_reason


class _MetricsMiddleware:
    """Counts every HTTP request by endpoint and status, and observes its latency to the last byte."""

    def __init__(self, app: Callable[..., Awaitable[None]], metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[..., Awaitable[Any]],
                       send: Callable[..., Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_wrapper(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        path = scope.get("path", "")
        endpoint = path if path in ENDPOINTS else ("/v1/models" if path.startswith("/v1/models/") else "other")
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe_request(endpoint, status[0], time.perf_counter() - start)


def create_app(engine: Engine, config: ServerConfig, metrics: Metrics | None = None,
               *, manage_engine: bool = True) -> FastAPI:
    """The FastAPI app. With `manage_engine`, the engine's worker starts and stops with the app's lifespan."""
    server = Server(engine, config, metrics)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage_engine:
            engine.start()
        try:
            yield
        finally:
            if manage_engine:
                engine.stop()

    app = FastAPI(title="steerwarm", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.server = server

    @app.exception_handler(APIError)
    async def _api_error(_request: Request, exc: APIError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            msg = f"no route {request.method} {request.url.path}; see GET /v1/models, POST /v1/chat/completions, " \
                  "POST /v1/completions, GET /health, GET /metrics"
        else:
            msg = f"{request.method} {request.url.path}: {exc.detail}"
        return JSONResponse(APIError(exc.status_code, msg, code="not_found" if exc.status_code == 404 else None)
                            .body(), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        err = APIError(500, f"internal error: {type(exc).__name__}: {exc}", code="internal_error")
        return JSONResponse(err.body(), status_code=500)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": server.served, "queue_depth": engine.queue_depth,
                "running_rows": engine.running_rows, "dial": server.registry.dial is not None}

    @app.get("/metrics")
    async def metrics_route(request: Request) -> PlainTextResponse:
        server.check_auth(request)
        return PlainTextResponse(server.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def list_models(request: Request) -> JSONResponse:
        server.check_auth(request)
        return JSONResponse(ModelList(data=[server.model_card()]).model_dump(mode="json"))

    @app.get("/v1/models/{model_id:path}")
    async def get_model(request: Request, model_id: str) -> JSONResponse:
        server.check_auth(request)
        server._model_warmth(model_id)
        return JSONResponse(server.model_card().model_dump(mode="json"))

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        server.check_auth(request)
        return await server.complete(request, "chat")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        server.check_auth(request)
        return await server.complete(request, "completion")

    app.add_middleware(_MetricsMiddleware, metrics=server.metrics)
    return app
