"""The server's shared request plumbing, bound to one engine (`ServingEngine`: the batching engine, or vLLM's behind
`steerwarm.serve.vllm_engine`): configuration, body reading and parsing, API-key
checks, model and steering resolution, token limits, submission to the engine, collecting its events, usage and
the `steering` block. The endpoint modules (chat, completions, models) and streaming build on it.

Invariants:
- Every client-caused failure is an `APIError` with its status; nothing here leaves the engine holding a request
  whose client is gone (collect cancels what it did not finish).
- With keys configured (`--api-key`, `--api-keys-file`: `steerwarm.serve.keys`), `check_auth` admits a request only
  with a key among them (compared in constant time) and within that key's limits (429 with `Retry-After` beyond
  them); the request's key id is then in `keys.current_key` for metrics and token charges. Keys are never logged.
- Drain (SIGTERM, `steerwarm.serve.lifecycle`): `begin_drain` leaves running requests alone; `drain_seconds`
  later `cut_inflight` ends every request still running with a 503 `server_shutting_down` (an error event in a stream)
  and refuses any later submission the same way.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from steerwarm.model.load import LoadedModel, canonical_name
from steerwarm.serve.engine import (
    ChoiceDone,
    Delta,
    EngineRequest,
    Event,
    Failed,
    Handle,
    PromptReady,
    QueueFullError,
)
from steerwarm.serve.errors import APIError
from steerwarm.serve.keys import KeyRing, KeysFileError, current_key, retry_after
from steerwarm.serve.metrics import Metrics
from steerwarm.serve.protocol import (
    AppliedVector,
    ChatCompletionRequest,
    CompletionRequest,
    MonitorInfo,
    SteeringInfo,
    Usage,
    split_model,
)
from steerwarm.serve.registry import RowSteering, SteeringRegistry

M = TypeVar("M", bound=BaseModel)
log = logging.getLogger("steerwarm.serve")


class ServingEngine(Protocol):
    """What the HTTP layer uses of an engine (`steerwarm.serve.engine.Engine`, `vllm_engine.VllmEngine`): its events
    and their order are the ones `engine.py` documents."""

    loaded: LoadedModel
    registry: SteeringRegistry
    tokenizer_lock: threading.Lock
    context_length: int
    max_batch: int
    # statistics (read by /metrics)
    steps: int
    prefills: int
    generated_tokens: int
    last_batch: int
    kv_grows: int
    row_failures: int  # requests failed alone by a fault in their own rows
    step_failures: int  # steps that failed as a whole (every request in flight failed)

    @property
    def queue_depth(self) -> int: ...

    @property
    def running_rows(self) -> int: ...

    @property
    def kv_bytes(self) -> int: ...

    def submit(self, requests: Sequence[EngineRequest], sinks: Sequence[Callable[[Event], None]]) -> list[Handle]:
        ...

    def start(self) -> None: ...

    def stop(self, timeout: float = 10.0) -> None: ...


@dataclass(frozen=True)
class ServerConfig:
    model_name: str
    api_key: str | None = None  # the single key (id "default"); with api_keys_file, both are in force
    api_keys_file: Path | None = None  # several keys with ids and limits (keys.py), reloaded by `reload_keys`
    max_body_bytes: int = 1 << 20
    default_max_tokens: int = 1024  # chat completions without max_tokens (clamped to the context left)
    completion_default_max_tokens: int = 16  # legacy completions default, as OpenAI's


class ClientGone(Exception):
    pass


class Bridge:
    """Carries engine events (worker thread) into the event loop, tagged with the prompt they belong to, and counts
    the tokens they report: what a key is charged, even for a request that does not complete (its prompts, each
    finished choice's completion tokens, and one token per streamed delta of an unfinished choice: a lower bound)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[tuple[int, Event]] = asyncio.Queue()
        self.handles: Sequence[Handle] = ()
        self._prompt_tokens = 0
        self._completion: dict[tuple[int, int], int] = {}  # (prompt, choice) -> tokens so far

    @property
    def tokens(self) -> int:
        return self._prompt_tokens + sum(self._completion.values())

    def _count(self, k: int, event: Event) -> None:
        if isinstance(event, PromptReady):
            self._prompt_tokens += event.prompt_tokens
        elif isinstance(event, Delta):
            self._completion[(k, event.choice)] = self._completion.get((k, event.choice), 0) + 1
        elif isinstance(event, ChoiceDone):
            self._completion[(k, event.choice)] = event.completion_tokens

    def abort(self, failed: Failed) -> None:
        """End the request (call in the loop): its reader sees `failed` after what already arrived; the engine drops
        its rows."""
        self.queue.put_nowait((0, failed))
        for h in self.handles:
            h.cancel()

    def sink(self, k: int) -> Callable[[Event], None]:
        def put(event: Event) -> None:
            self._count(k, event)
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (k, event))

        return put


@dataclass
class Prepared:
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


def validation_error(exc: ValidationError) -> APIError:
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


def parse(model: type[M], body: bytes) -> M:
    if not body.strip():
        raise APIError(400, "the request body is empty; send a JSON object", code="invalid_json")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error(exc) from None


class BodyReader:
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

    def __init__(self, engine: ServingEngine, config: ServerConfig, metrics: Metrics | None = None) -> None:
        self.engine = engine
        self.loaded = engine.loaded
        self.registry = engine.registry
        self.config = config
        self.metrics = metrics or Metrics()
        self.created = int(time.time())
        self.body = BodyReader(config.max_body_bytes)
        self.served = canonical_name(config.model_name)
        self.keys = KeyRing(config.api_key, config.api_keys_file)
        self._inflight: weakref.WeakSet[Bridge] = weakref.WeakSet()  # submitted, not yet `release`d
        self.draining = False
        self.cut: str | None = None  # after the drain deadline: why new submissions are refused
        self.rate_limited = 0  # 429s for a key over its limit (the other 429s: queue full)
        m = self.metrics
        m.gauge("steerwarm_queue_depth", "Requests waiting to join the batch.", lambda: engine.queue_depth)
        m.gauge("steerwarm_running_rows", "Sequences in the running batch.", lambda: engine.running_rows)
        m.gauge("steerwarm_last_step_batch_size", "Rows decoded by the last step.", lambda: engine.last_batch)
        m.counter("steerwarm_decode_steps_total", "Batched decode steps.", lambda: engine.steps)
        m.gauge("steerwarm_kv_slot_bytes", "Bytes of preallocated KV slot storage.", lambda: engine.kv_bytes)
        m.counter("steerwarm_kv_slot_grows_total", "Times the KV slot columns doubled (one copy of every row).",
                  lambda: engine.kv_grows)
        m.counter("steerwarm_prefills_total", "Prefill forward passes.", lambda: engine.prefills)
        m.counter("steerwarm_generated_tokens_total", "Tokens sampled (including cancelled requests).",
                  lambda: engine.generated_tokens)
        m.counter("steerwarm_row_failures_total", "Requests failed alone by a fault in their own rows (sampling, "
                  "steering, decoding); the rest of the batch went on.", lambda: engine.row_failures)
        m.counter("steerwarm_step_failures_total", "Engine steps that failed as a whole (every request in flight "
                  "failed, the batch was reset).", lambda: engine.step_failures)
        m.gauge("steerwarm_api_keys", "API keys in force (--api-key and --api-keys-file).", lambda: len(self.keys.ids))
        m.counter("steerwarm_rate_limited_total", "Requests refused (429) because their key was over its rpm or tpm "
                  "limit (by key: steerwarm_key_requests_total).", lambda: self.rate_limited)

    # -- helpers --------------------------------------------------------------------------------------------------
    def check_auth(self, request: Request) -> None:
        if not self.keys.enabled:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise APIError(401, "missing API key: send the header 'Authorization: Bearer <key>'",
                           code="invalid_api_key")
        key = self.keys.match(token.strip())
        if key is None:
            raise APIError(401, "incorrect API key provided", code="invalid_api_key")
        current_key.set(key)
        refused = key.admit()
        if refused is not None:
            limit, wait = refused
            secs = retry_after(wait)
            self.rate_limited += 1
            what = f"{key.rpm} requests" if limit == "rpm" else f"{key.tpm} tokens"
            raise APIError(429, f"rate limit reached for API key {key.id!r}: {what} per minute; retry in {secs} s",
                           code="rate_limit_exceeded", retry_after=secs)

    def reload_keys(self) -> None:
        """Re-read the keys file (SIGHUP); on a bad file keep the keys in force and log why."""
        try:
            ids = self.keys.reload()
        except KeysFileError as exc:
            log.error("keys not reloaded, the previous keys stay in force: %s", exc)
            return
        log.warning("keys reloaded from %s: %d in force (%s)", self.keys.path, len(ids), ", ".join(ids))

    # -- drain ----------------------------------------------------------------------------------------------------
    def begin_drain(self, seconds: float) -> None:
        """The listener is closing (call in the loop): let running requests finish, cut what runs `seconds` later."""
        if self.draining:
            return
        self.draining = True
        running = len(self._inflight)
        log.warning("draining: new connections refused; %d request(s) submitted may run %g s more "
                    "(--drain-seconds)", running, seconds)
        asyncio.get_running_loop().call_later(seconds, self.cut_inflight, seconds)

    def cut_inflight(self, seconds: float) -> None:
        self.cut = (f"the server is shutting down: requests still running {seconds:g} s after it was told to stop "
                    "(--drain-seconds) are cancelled; retry")
        bridges = list(self._inflight)
        for bridge in bridges:
            bridge.abort(Failed(self.cut, status=503, code="server_shutting_down"))
        log.warning("drain deadline: cut %d request(s) still in flight", len(bridges))

    def model_warmth(self, model: str) -> float | None:
        base, warmth = split_model(model)
        if canonical_name(base) != self.served:
            raise APIError(404, f"the model {base!r} does not exist: this server serves {self.served!r} "
                           "(GET /v1/models); a warmth can be added as a suffix, e.g. "
                           f"'{self.served}@warmth=0.5'", param="model", code="model_not_found")
        return warmth

    def steering_of(self, req: ChatCompletionRequest | CompletionRequest) -> RowSteering:
        suffix = self.model_warmth(req.model)
        if suffix is not None and req.warmth is not None and suffix != req.warmth:
            raise APIError(400, f"warmth is given twice and disagrees: {req.warmth} in the body, {suffix} in the "
                           "model name; send one", param="warmth", code="conflicting_warmth")
        warmth = req.warmth if req.warmth is not None else (suffix or 0.0)
        raw = [(s.vector, s.layers, s.coef) for s in req.steering_list()]
        return self.registry.resolve(warmth, raw)

    def encode(self, text: str, *, special: bool) -> list[int]:
        with self.engine.tokenizer_lock:
            ids = self.loaded.tokenizer(text, add_special_tokens=special)["input_ids"]
        return [int(x) for x in ids]

    def max_tokens(self, asked: int | None, prompt_len: int, default: int, prompt_param: str) -> int:
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

    def check_n(self, n: int) -> None:
        if n > self.engine.max_batch:
            raise APIError(400, f"n={n} exceeds this server's batch size {self.engine.max_batch}; lower n",
                           param="n", code="invalid_value")

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

    def submit(self, prep: Prepared) -> tuple[Bridge, list[Handle]]:
        if self.cut is not None:
            raise APIError(503, self.cut, code="server_shutting_down")
        bridge = Bridge(asyncio.get_running_loop())
        try:
            handles = self.engine.submit(prep.requests, [bridge.sink(k) for k in range(len(prep.requests))])
        except QueueFullError as exc:
            raise APIError(429, str(exc), code="queue_full") from None
        except ValueError as exc:
            raise APIError(400, str(exc), code="invalid_value") from None
        bridge.handles = handles
        self._inflight.add(bridge)
        return bridge, handles

    def release(self, bridge: Bridge) -> None:
        """The request's response is complete (or abandoned): a drain no longer waits for it, and its key (if any)
        is charged the tokens it used (once)."""
        if bridge not in self._inflight:
            return
        self._inflight.discard(bridge)
        key = current_key.get()
        if key is not None:
            key.charge(bridge.tokens)

    # -- non-streaming --------------------------------------------------------------------------------------------
    async def collect(self, request: Request, prep: Prepared, bridge: Bridge, handles: Sequence[Handle]
                      ) -> tuple[list[PromptReady | None], dict[int, ChoiceDone]]:
        prompts: list[PromptReady | None] = [None] * len(prep.requests)
        dones: dict[int, ChoiceDone] = {}
        total = len(prep.requests) * prep.n
        watcher = asyncio.ensure_future(wait_disconnect(request))
        try:
            while len(dones) < total:
                getter = asyncio.ensure_future(bridge.queue.get())
                finished, _ = await asyncio.wait({getter, watcher}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in finished:
                    getter.cancel()
                    raise ClientGone()
                k, ev = getter.result()
                if isinstance(ev, Failed):
                    raise APIError(ev.status, ev.message, code=ev.code)
                if isinstance(ev, PromptReady):
                    prompts[k] = ev
                elif isinstance(ev, ChoiceDone):
                    dones[k * prep.n + ev.choice] = ev
        finally:
            watcher.cancel()
            self.release(bridge)
            if len(dones) < total:
                for h in handles:
                    h.cancel()
        return prompts, dones

    def usage(self, prompts: Sequence[PromptReady | None], dones: Sequence[ChoiceDone]) -> Usage:
        p = sum(x.prompt_tokens for x in prompts if x is not None)
        c = sum(d.completion_tokens for d in dones)
        self.metrics.add_tokens(p, c)
        return Usage(prompt_tokens=p, completion_tokens=c, total_tokens=p + c)



async def wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def finish_reason(done: ChoiceDone) -> Any:
    return done.finish_reason

