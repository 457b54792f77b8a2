"""The batching engine: one worker thread owns the model and decodes every running request in one forward pass per
step, each batch row steered with its own coefficients (continuous batching).

Invariants:
- Only the worker thread (or a test calling `step()` while no worker runs) touches the model, the KV slots and the
  steering hooks. Other threads only `submit` (append to a bounded queue under a lock) and `cancel` (set a flag).
- Batch state: `rows` (one per generated sequence), and for row i the KV slot row i of a `SlotCache` (the key and
  value of the token at position p live in column p), `lengths[i]` (tokens in its slot) and `next[i]` (the
  token it feeds at position `lengths[i]` in the next decode step). Running rows always occupy slot rows
  [0, len(rows)), in the order of `rows`.
- No step copies the cache of a running row: a newcomer's prompt is prefilled straight into free slot rows (right
  padded, positions 0..L-1, so its columns are its positions), and a decode step writes one column per row. When a row
  finishes, the last row moves into its slot (one row's copy); an extra choice of a prompt copies that prompt's
  slot row; when a position reaches the slot columns they double (one copy of every row, logged as a grow).
- A row's positions never change, and the mask of its query at position p admits exactly its columns <= p (within
  the window on sliding-window layers), so its tokens are the ones it would produce alone, up to floating-point
  reordering in batched kernels.
- Steering: one `Steering` over the keys (vector, layers) present in the batch, with one coefficient per row.
  Coefficients are recomputed (`set_coefs`) only when the batch's per-row steering changes; hooks are rebuilt only
  when the set of keys changes. Prefill padding (right of a prompt) may be steered: no real token attends to it and
  its outputs are discarded.
- Warmth monitor: a hook registered on the monitor layer *before* any steering hook reads that layer's output
  before steering is added there, at every position of every forward call; the engine keeps each row's value at the
  position that produces each generated token (its last prompt position in prefill, the only one in decode). Its
  projection onto the unit warm direction divided by the layer's typical norm is averaged per row. At the first
  steered layer this depends only on the tokens, so it measures the text, not the injection.
- Sampling: temperature 0 is argmax; otherwise temperature, then top-p, then a draw from the row's own
  torch.Generator (seeded by the request's seed + choice index), so a seeded row's draws do not depend on the other
  rows of the batch.
- Every submitted request ends with exactly one `ChoiceDone` per choice, or a `Failed`, unless it was cancelled.
- Fault isolation: a failure that belongs to one row (its steering alone fails to resolve, its sampling, its token
  accounting, decoding and stop handling) fails that row's request alone (`Failed`, the request cancelled, all its
  rows dropped, `row_failures` counted) while the other rows go on; only a failure of the step itself (the batch's
  forward pass, hooks, slots) fails everything in flight and resets the batch.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from steerwarm.model.anatomy import decoder_layers, hidden_of, unembedding
from steerwarm.model.device import input_device
from steerwarm.model.load import LoadedModel
from steerwarm.serve.kernels import FastLinears, install, unavailable_reason
from steerwarm.serve.registry import RowSteering, SpecKey, SteeringRegistry
from steerwarm.serve.slots import MIN_COLS, SlotCache, attention_masks, check_layer_types
from steerwarm.serve.text import IncrementalDecoder, StopMatcher, TokenPieces, text_with_offsets
from steerwarm.steer.hooks import Steering

log = logging.getLogger("steerwarm.serve")

PROMPT_LOGPROB_CHUNK = 256


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: int | None = None  # top-N alternatives per generated token; None = no logprobs


@dataclass(frozen=True)
class EngineRequest:
    prompt_ids: tuple[int, ...]
    params: SamplingParams
    steering: RowSteering = field(default_factory=RowSteering)
    n: int = 1
    stream: bool = False
    echo: bool = False  # report the prompt text (and, with prompt_logprobs, its token logprobs)
    prompt_logprobs: int | None = None  # top-N alternatives per prompt token; None = not needed


@dataclass(frozen=True)
class TopInfo:
    token_id: int
    token: str
    bytes: list[int]
    logprob: float


@dataclass(frozen=True)
class TokenInfo:
    token_id: int
    token: str
    bytes: list[int]
    logprob: float | None  # None for the first prompt token (nothing predicts it)
    offset: int  # character offset of the token in its text (prompt text, or completion text)
    top: tuple[TopInfo, ...]


@dataclass(frozen=True)
class PromptReady:
    prompt_tokens: int
    text: str | None
    logprobs: tuple[TokenInfo, ...] | None


@dataclass(frozen=True)
class Delta:
    choice: int
    text: str
    logprobs: tuple[TokenInfo, ...]


@dataclass(frozen=True)
class ChoiceDone:
    choice: int
    finish_reason: str
    text: str
    tail: str  # the part of `text` not yet sent as a Delta (streaming)
    tail_logprobs: tuple[TokenInfo, ...]
    completion_tokens: int
    logprobs: tuple[TokenInfo, ...] | None
    projection_sum: float
    projection_count: int


@dataclass(frozen=True)
class Failed:
    message: str
    status: int = 500  # what the HTTP layer answers (503 for requests cut by a drain deadline)
    code: str = "generation_failed"


Event = PromptReady | Delta | ChoiceDone | Failed
Sink = Callable[[Event], None]


class QueueFullError(RuntimeError):
    """The waiting queue is full; the client should retry later."""


@dataclass(eq=False)
class _Req:
    spec: EngineRequest
    sink: Sink
    submitted: float
    cancelled: bool = False
    left: int = 0


@dataclass(eq=False)
class _Row:
    req: _Req
    choice: int
    generator: torch.Generator | None
    decoder: IncrementalDecoder
    stop: StopMatcher
    text: str = ""
    emitted: int = 0
    generated: int = 0
    logprobs: list[TokenInfo] = field(default_factory=list)
    pending: list[TokenInfo] = field(default_factory=list)
    proj_sum: float = 0.0
    proj_n: int = 0

    @property
    def params(self) -> SamplingParams:
        return self.req.spec.params


class Cancellable(Protocol):
    """A submitted request as the engine loop sees it: where its events go, and whether it was cancelled."""

    cancelled: bool

    @property
    def sink(self) -> Sink: ...


class Handle:
    """What `submit` returns: lets the caller cancel (a disconnected client frees its rows at the next step)."""

    def __init__(self, engine: EngineLoop, req: Cancellable) -> None:
        self._engine = engine
        self._req = req

    def cancel(self) -> None:
        if not self._req.cancelled:
            self._req.cancelled = True
            self._engine._wake()

    @property
    def cancelled(self) -> bool:
        return self._req.cancelled


class _MonitorHook:
    def __init__(self, module: torch.nn.Module, direction: torch.Tensor, norm: float) -> None:
        self.direction = direction.float()
        self.norm = float(norm)
        self.last: torch.Tensor | None = None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, _m: torch.nn.Module, _a: tuple[Any, ...], output: Any) -> None:
        h = hidden_of(output).float()  # [rows, positions, hidden]
        if self.direction.device != h.device:
            self.direction = self.direction.to(h.device)  # once: the layer stays where it is
        self.last = (h @ self.direction) / self.norm

    def take(self) -> torch.Tensor | None:
        out, self.last = self.last, None
        return out


def _sample(logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator | None) -> int:
    scaled = logits.float() / temperature
    if top_p < 1.0:
        ordered, order = torch.sort(scaled, descending=True)
        probs = torch.softmax(ordered, dim=-1)
        # keep the smallest prefix whose mass reaches top_p (always at least the most likely token)
        probs = probs.masked_fill(torch.cumsum(probs, dim=-1) - probs > top_p, 0.0)
        return int(order[torch.multinomial(probs, 1, generator=gen)])
    return int(torch.multinomial(torch.softmax(scaled, dim=-1), 1, generator=gen))


def _slot_rows(spec: EngineRequest) -> int:
    # a prompt with max_tokens 0 still takes a slot row while it is prefilled (echo, prompt logprobs)
    return spec.n if spec.params.max_tokens > 0 else 1


class EngineLoop:
    """The engine thread shared by the engines: `submit` queues under `_cond` and wakes it; it calls `step()` while
    `_busy()`; `stop` ends it, fails what is left (`_fail_all`) and releases the engine (`close`)."""

    thread_name = "steerwarm-engine"

    def __init__(self, max_batch: int, max_queue: int, context_length: int) -> None:
        if max_batch < 1 or max_queue < 1:
            raise ValueError("max_batch and max_queue must be at least 1")
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.context_length = context_length
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def _busy(self) -> bool:
        raise NotImplementedError

    def step(self) -> None:
        raise NotImplementedError

    def _fail_all(self, message: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def check(self, spec: EngineRequest) -> None:
        """Refuse (ValueError, the server's 400) a request no batch could run."""
        if not spec.prompt_ids:
            raise ValueError("the prompt is empty")
        if not 1 <= spec.n <= self.max_batch:
            raise ValueError(f"n must be within [1, {self.max_batch}] (the server's --max-batch)")
        if len(spec.prompt_ids) + spec.params.max_tokens > self.context_length:
            raise ValueError(f"prompt ({len(spec.prompt_ids)} tokens) + max_tokens ({spec.params.max_tokens}) "
                             f"exceeds the context length {self.context_length}")

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._fail_all("the server is shutting down")
        self.close()

    def run_until_idle(self, max_steps: int = 100_000) -> None:
        """Step until nothing is queued or running (for tests and scripts without the worker thread)."""
        for _ in range(max_steps):
            if not self._busy():
                return
            self.step()
        raise RuntimeError(f"engine still busy after {max_steps} steps")

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def _send(self, req: Cancellable, event: Event) -> None:
        if req.cancelled:
            return
        try:
            req.sink(event)
        except Exception:  # a sink that cannot take events (closed loop, gone client) cancels its request
            log.debug("sink failed; cancelling its request", exc_info=True)
            req.cancelled = True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._busy():
                    self._cond.wait()
                if self._stopping:
                    return
            self.step()


class Engine(EngineLoop):
    def __init__(self, loaded: LoadedModel, registry: SteeringRegistry, *, max_batch: int = 32,
                 max_queue: int = 256, fast_kernels: bool = False) -> None:
        cfg = loaded.model.config
        super().__init__(max_batch, max_queue, int(getattr(cfg, "max_position_embeddings", 0) or 2048))
        self.loaded = loaded
        self.model = loaded.model
        self._net: Any = loaded.model  # for transformers methods that carry no type hints
        # inputs go where the embeddings are, logits come from where the unembedding is: one device, or the first
        # and last of a model spread over several (steering and the KV slots follow each layer's own device)
        self.device = input_device(self.model)
        self._head = unembedding(self.model)
        self.head_device: torch.device = next(self._head.parameters()).device
        self.tokenizer = loaded.tokenizer
        self.registry = registry
        self.tokenizer_lock = threading.Lock()  # the app encodes, the worker decodes: never at once
        self.pieces = TokenPieces(self.tokenizer)
        eos: set[int] = set()
        for src in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            if isinstance(src, int):
                eos.add(src)
            elif isinstance(src, list | tuple):
                eos.update(int(x) for x in src)
        self.eos_ids = frozenset(eos)
        self.pad_id = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0)
        check_layer_types(cfg)
        self._fast: FastLinears | None = None
        if not fast_kernels:
            self.kernels_note = "fast kernels: off (--fast-kernels turns them on)"
        elif self.model.dtype != torch.float32 or self.device.type != "cpu":
            self.kernels_note = f"fast kernels: not used ({self.model.dtype} on {self.device.type}; float32 CPU only)"
        elif (reason := unavailable_reason()) is not None:
            self.kernels_note = f"fast kernels: unavailable ({reason})"
        else:
            self._fast = install(self.model)
            self.kernels_note = (f"fast kernels: {len(self._fast.modules)} float32 linear layers prepacked for oneDNN "
                                 "(batched calls)")
        self._waiting: deque[_Req] = deque()
        self._rows: list[_Row] = []
        self._slots: SlotCache | None = None
        self._lengths: list[int] = []  # per row: tokens in its slot row
        self._next: list[int] = []  # per row: the token it feeds at position lengths[i]
        self._steering: Steering | None = None
        self._steer_keys: tuple[SpecKey, ...] | None = None
        self._steer_rows: tuple[RowSteering, ...] | None = None
        self._monitor: _MonitorHook | None = None
        if registry.monitor is not None:
            mon = registry.monitor
            self._monitor = _MonitorHook(decoder_layers(self.model)[mon.layer], mon.direction, mon.norm)
        self._reserved = 0  # rows of requests taken from the queue and being prefilled
        # statistics (read by /metrics)
        self.steps = 0
        self.prefills = 0
        self.generated_tokens = 0
        self.last_batch = 0
        self.kv_grows = 0  # times the slot columns doubled (each copies every row once)
        self.row_failures = 0  # requests failed alone by a fault in their own rows (see the module doc)
        self.step_failures = 0  # steps that failed as a whole

    # -- public API (any thread) ----------------------------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        """Waiting requests that cannot join the batch at the next step (the bounded queue)."""
        with self._cond:
            return self._queued(list(self._waiting))

    def _queued(self, waiting: Sequence[_Req]) -> int:
        # FIFO admission: requests that fit in the free rows join at the next step; the rest are queued.
        room = self.max_batch - len(self._rows) - self._reserved
        for i, r in enumerate(waiting):
            rows = _slot_rows(r.spec)
            if rows > room:
                return len(waiting) - i
            room -= rows
        return 0

    @property
    def running_rows(self) -> int:
        return len(self._rows)

    @property
    def kv_bytes(self) -> int:
        return self._slots.nbytes if self._slots is not None else 0

    @property
    def kv_slots(self) -> SlotCache | None:
        """The KV slot storage (None until the first prompt, and after an idle server released a grown one)."""
        return self._slots

    def submit(self, requests: Sequence[EngineRequest], sinks: Sequence[Sink]) -> list[Handle]:
        """Queue requests (all or none); raises QueueFullError when the waiting queue cannot take them all."""
        reqs = []
        for spec, sink in zip(requests, sinks, strict=True):
            self.check(spec)
            reqs.append(_Req(spec, sink, time.perf_counter(), left=spec.n))
        with self._cond:
            if self._queued([*self._waiting, *reqs]) > self.max_queue:
                raise QueueFullError(f"the server's queue is full ({self.max_queue} requests wait for a free batch "
                                     "row); retry later")
            self._waiting.extend(reqs)
            self._cond.notify()
        return [Handle(self, r) for r in reqs]

    def close(self) -> None:
        """Remove every hook this engine put on the model."""
        if self._steering is not None:
            self._steering.close()
            self._steering = None
            self._steer_keys = self._steer_rows = None
        if self._monitor is not None:
            self._monitor.handle.remove()
            self._monitor = None
        if self._fast is not None:
            self._fast.remove()
            self._fast = None

    def _busy(self) -> bool:
        return bool(self._waiting or self._rows)

    def step(self) -> None:
        """One scheduling iteration: drop cancelled rows, admit and prefill newcomers, decode one token per row."""
        newcomers: list[_Req] = []
        try:
            with torch.inference_mode():
                self._drop([i for i, r in enumerate(self._rows) if r.req.cancelled])
                newcomers = self._take_newcomers()
                if newcomers:
                    try:
                        self._admit(newcomers)
                    finally:
                        with self._cond:
                            self._reserved = 0
                newcomers = []
                if self._rows:
                    self._decode()
        except Exception as exc:  # keep serving: fail what was in flight, reset the batch
            log.exception("engine step failed")
            self.step_failures += 1
            message = f"generation failed: {type(exc).__name__}: {exc}"
            for req in {id(r): r for r in [row.req for row in self._rows] + newcomers}.values():
                self._send(req, Failed(message))
                req.cancelled = True  # nothing more goes to a failed request
            self._reset_batch()

    # -- admission and prefill ------------------------------------------------------------------------------------
    def _take_newcomers(self) -> list[_Req]:
        out: list[_Req] = []
        room = self.max_batch - len(self._rows)
        with self._cond:
            if any(r.cancelled for r in self._waiting):
                self._waiting = deque(r for r in self._waiting if not r.cancelled)
            while self._waiting:
                head = self._waiting[0]
                rows = _slot_rows(head.spec)
                if rows > room:
                    break
                room -= rows
                self._reserved += rows
                out.append(self._waiting.popleft())
        return out

    def _admit(self, newcomers: list[_Req]) -> None:
        # every newcomer joins this step; prompts are prefilled together, sorted by length into chunks of similar
        # padded size
        budget = max(2048, max(len(r.spec.prompt_ids) for r in newcomers))
        chunk: list[_Req] = []
        for r in sorted(newcomers, key=lambda r: len(r.spec.prompt_ids)):
            if chunk and (len(chunk) + 1) * len(r.spec.prompt_ids) > budget:
                self._prefill(chunk)
                chunk = []
            chunk.append(r)
        if chunk:
            self._prefill(chunk)

    def _slot_cache(self, cols: int) -> SlotCache:
        if self._slots is None:
            self._slots = SlotCache(self.max_batch, dtype=self.model.dtype, device=self.device)
        if self._slots.reserve(cols):
            self.kv_grows += 1
            log.info("KV slots grew to %d columns (%.0f MB)", self._slots.cols, self._slots.nbytes / 1e6)
        return self._slots

    def _forward(self, start: int, ids: torch.Tensor, positions: torch.Tensor, width: int) -> torch.Tensor:
        """Run the decoder on `ids` [n, q] at `positions` (all < width) into slot rows [start, start + n); last
        hidden states."""
        slots = self._slot_cache(width)
        slots.bind(start, positions, width)
        mask = attention_masks(self.model.config, positions, width, self.model.dtype)
        out = self._net.get_decoder()(input_ids=ids, attention_mask=mask, position_ids=positions,
                                       past_key_values=slots, use_cache=True)
        hidden: torch.Tensor = out.last_hidden_state
        return hidden

    def _prefill(self, group: list[_Req]) -> None:
        lengths = [len(r.spec.prompt_ids) for r in group]
        width = max(lengths)
        ids = torch.full((len(group), width), self.pad_id, dtype=torch.long, device=self.device)
        for i, r in enumerate(group):
            ids[i, :lengths[i]] = torch.tensor(r.spec.prompt_ids, dtype=torch.long, device=self.device)
        # right padding: a prompt's tokens sit at positions (= slot columns) 0..L-1; padding comes after them
        positions = torch.arange(width, device=self.device).expand(len(group), width)
        start = len(self._rows)
        try:
            self._apply_steering([r.spec.steering for r in group])
        except Exception:  # nothing is written yet: fail the requests whose steering fails alone, prefill the rest
            bad = [(r, exc) for r in group if (exc := self._steering_fault(r.spec.steering)) is not None]
            if not bad:
                raise
            for r, exc in bad:
                self._fail_request(r, "steering", exc)
            rest = [r for r in group if not r.cancelled]
            if rest:
                self._prefill(rest)
            return
        hidden = self._forward(start, ids, positions, width)
        self.prefills += 1
        at = torch.tensor([n - 1 for n in lengths], dtype=torch.long)
        picked = torch.arange(len(group))
        last = self._lm_head(hidden[picked.to(hidden.device), at.to(hidden.device)])
        proj = self._monitor.take() if self._monitor is not None else None
        last_proj = proj[picked.to(proj.device), at.to(proj.device)] if proj is not None else None
        # slot rows [start, start + len(group)) now hold the prompts; choice 0 of each prompt keeps its row (or
        # leaves it, finished), further choices get rows after them with a copy of their prompt's row
        rows: list[_Row] = []
        src: list[int] = []
        done: set[int] = set()
        for i, req in enumerate(group):
            text = None
            prompt_lp = None
            if req.spec.echo and not req.cancelled:
                text, offsets = self._prompt_text(req.spec.prompt_ids)
                if req.spec.prompt_logprobs is not None:
                    prompt_lp = self._prompt_logprobs(req.spec, hidden[i, :lengths[i]], offsets)
            self._send(req, PromptReady(len(req.spec.prompt_ids), text, prompt_lp))
            if req.spec.params.max_tokens == 0:
                for c in range(req.spec.n):
                    self._send(req, ChoiceDone(c, "length", "", "", (), 0, () if req.spec.params.logprobs is not None
                                               else None, 0.0, 0))
            rows.append(self._new_row(req, 0))
            src.append(i)
            if req.cancelled or req.spec.params.max_tokens == 0:
                done.add(start + i)
        slots = self._slots
        assert slots is not None  # _forward made it
        for i, req in enumerate(group):
            if req.cancelled or req.spec.params.max_tokens == 0:
                continue
            for c in range(1, req.spec.n):
                slots.move(start + i, start + len(rows), lengths[i])
                rows.append(self._new_row(req, c))
                src.append(i)
        self._rows = self._rows + rows
        self._lengths += [lengths[i] for i in src]
        index = torch.tensor(src, dtype=torch.long, device=last.device)
        row_logits = last.index_select(0, index)
        tokens, faults = self._choose(rows, row_logits)
        self._next += tokens
        for j, row in enumerate(rows):
            if start + j in done or j in faults:
                continue
            p = float(last_proj[src[j]]) if last_proj is not None else None
            try:
                if self._advance(row, tokens[j], row_logits[j], p):
                    done.add(start + j)
            except Exception as exc:
                faults[j] = ("decoding and stop handling", exc)
        self._drop(sorted(done | self._fail_rows({start + j: f for j, f in faults.items()})))

    def _new_row(self, req: _Req, choice: int) -> _Row:
        p = req.spec.params
        gen = None
        if p.temperature > 0:
            seed = (p.seed + choice) if p.seed is not None else secrets.randbits(63)
            gen = torch.Generator(device=self.head_device).manual_seed(seed % (2**63))
        return _Row(req, choice, gen, IncrementalDecoder(self.tokenizer, skip_special_tokens=True),
                    StopMatcher(p.stop))

    def _lm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self._head(hidden).float()
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def _prompt_text(self, prompt: Sequence[int]) -> tuple[str, list[int]]:
        with self.tokenizer_lock:
            return text_with_offsets(self.tokenizer, prompt)

    def _prompt_logprobs(self, spec: EngineRequest, hidden: torch.Tensor, offsets: list[int]) -> tuple[TokenInfo, ...]:
        k = spec.prompt_logprobs or 0
        ids = spec.prompt_ids
        out: list[TokenInfo] = []
        tok, raw = self.pieces.get(ids[0])
        out.append(TokenInfo(ids[0], tok, raw, None, offsets[0], ()))
        target = torch.tensor(ids[1:], dtype=torch.long, device=self.head_device)
        for start in range(0, len(ids) - 1, PROMPT_LOGPROB_CHUNK):
            stop = min(start + PROMPT_LOGPROB_CHUNK, len(ids) - 1)
            lp = torch.log_softmax(self._lm_head(hidden[start:stop]), dim=-1)
            chosen = lp.gather(1, target[start:stop, None])[:, 0].tolist()
            tops = lp.topk(k, dim=-1) if k > 0 else None
            for j in range(stop - start):
                t = ids[start + j + 1]
                top = self._tops(tops.values[j], tops.indices[j]) if tops is not None else ()
                tok, raw = self.pieces.get(t)
                out.append(TokenInfo(t, tok, raw, float(chosen[j]), offsets[start + j + 1], top))
        return tuple(out)

    def _tops(self, values: torch.Tensor, indices: torch.Tensor) -> tuple[TopInfo, ...]:
        out = []
        for v, i in zip(values.tolist(), indices.tolist(), strict=True):
            tok, raw = self.pieces.get(int(i))
            out.append(TopInfo(int(i), tok, raw, float(v)))
        return tuple(out)

    # -- decoding -------------------------------------------------------------------------------------------------
    def _decode(self) -> None:
        self._steer_batch()
        rows = self._rows
        if not rows:
            return
        ids = torch.tensor(self._next, dtype=torch.long, device=self.device)[:, None]
        positions = torch.tensor(self._lengths, dtype=torch.long, device=self.device)[:, None]
        hidden = self._forward(0, ids, positions, max(self._lengths) + 1)
        logits = self._lm_head(hidden[:, -1, :])
        self._lengths = [n + 1 for n in self._lengths]
        self.steps += 1
        self.last_batch = len(rows)
        proj = self._monitor.take() if self._monitor is not None else None
        tokens, faults = self._choose(rows, logits)
        self._next = tokens
        done: set[int] = set()
        for i, row in enumerate(rows):
            if i in faults:
                continue
            try:
                if self._advance(row, tokens[i], logits[i], float(proj[i, -1]) if proj is not None else None):
                    done.add(i)
            except Exception as exc:
                faults[i] = ("decoding and stop handling", exc)
        self._drop(sorted(done | self._fail_rows(faults)))

    def _choose(self, rows: Sequence[_Row], logits: torch.Tensor) -> tuple[list[int], dict[int, tuple[str, Exception]]]:
        """Each row's next token, and the rows whose sampling failed (index -> (phase, exception))."""
        tokens: list[int] = logits.argmax(dim=-1).tolist()
        faults: dict[int, tuple[str, Exception]] = {}
        for i, row in enumerate(rows):
            p = row.params
            if p.temperature > 0:
                try:
                    tokens[i] = _sample(logits[i], p.temperature, p.top_p, row.generator)
                except Exception as exc:
                    faults[i] = ("sampling", exc)
        return tokens, faults

    # -- fault isolation (see the module doc) ----------------------------------------------------------------------
    def _fail_request(self, req: _Req, phase: str, exc: Exception) -> None:
        if req.cancelled:
            return
        log.error("request failed alone in %s: %s: %s", phase, type(exc).__name__, exc, exc_info=exc)
        self.row_failures += 1
        self._send(req, Failed(f"generation failed for this request ({phase}): {type(exc).__name__}: {exc}"))
        req.cancelled = True  # nothing more goes to a failed request

    def _fail_rows(self, faults: dict[int, tuple[str, Exception]]) -> set[int]:
        """Fail the requests of the faulty rows (index into the batch -> (phase, exception)); returns the indices
        of every row of those requests (their other choices too), for the caller to drop."""
        failed = set()
        for i, (phase, exc) in faults.items():
            req = self._rows[i].req
            self._fail_request(req, phase, exc)
            failed.add(id(req))
        return {i for i, r in enumerate(self._rows) if id(r.req) in failed}

    def _steering_fault(self, rows: RowSteering) -> Exception | None:
        """Why one row's steering cannot be resolved on its own, or None."""
        try:
            self.registry.specs((rows,))
        except Exception as exc:
            return exc
        return None

    def _steer_batch(self) -> None:
        """Steer the running rows; when that fails and some rows' steering fails alone, fail those requests and steer
        the rest. A failure no single row causes is the step's (re-raised)."""
        try:
            self._apply_steering([r.req.spec.steering for r in self._rows])
        except Exception:
            faults = {i: ("steering", exc) for i, r in enumerate(self._rows)
                      if (exc := self._steering_fault(r.req.spec.steering)) is not None}
            if not faults:
                raise
            self._drop(sorted(self._fail_rows(faults)))
            if self._rows:
                self._apply_steering([r.req.spec.steering for r in self._rows])

    def _advance(self, row: _Row, token: int, logits: torch.Tensor, proj: float | torch.Tensor | None) -> bool:
        """Account one generated token to `row`; returns True when the row finished."""
        if proj is not None:
            row.proj_sum += float(proj)
            row.proj_n += 1
        row.generated += 1
        self.generated_tokens += 1
        if token in self.eos_ids:
            self._finish(row, "stop", flush=True)
            return True
        k = row.params.logprobs
        if k is not None:
            lp = torch.log_softmax(logits, dim=-1)
            tops = lp.topk(k) if k > 0 else None
            tok, raw = self.pieces.get(token)
            info = TokenInfo(token, tok, raw, float(lp[token]), len(row.decoder.text),
                             self._tops(tops.values, tops.indices) if tops is not None else ())
            row.logprobs.append(info)
            row.pending.append(info)
        with self.tokenizer_lock:
            delta = row.decoder.push(token)
        if delta and self._append(row, delta):
            self._finish(row, "stop", flush=False)
            return True
        if row.generated >= row.params.max_tokens:
            self._finish(row, "length", flush=True)
            return True
        if row.req.spec.stream:
            safe = len(row.text) - row.stop.holdback(row.text)
            if safe > row.emitted or row.pending:
                text = row.text[row.emitted:max(safe, row.emitted)]
                row.emitted = max(safe, row.emitted)
                self._send(row.req, Delta(row.choice, text, tuple(row.pending)))
                row.pending.clear()
        return False

    @staticmethod
    def _append(row: _Row, text: str) -> bool:
        """Add decoded text to the row; True (and the text cut before it) when a stop sequence now appears."""
        start = len(row.text)
        row.text += text
        hit = row.stop.find(row.text, start)
        if hit is None:
            return False
        row.text = row.text[:hit]
        return True

    def _finish(self, row: _Row, reason: str, *, flush: bool) -> None:
        if flush:
            with self.tokenizer_lock:
                rest = row.decoder.flush()
            if rest and self._append(row, rest):
                reason = "stop"
        logprobs = tuple(row.logprobs) if row.params.logprobs is not None else None
        self._send(row.req, ChoiceDone(row.choice, reason, row.text, row.text[row.emitted:], tuple(row.pending),
                                       row.generated, logprobs, row.proj_sum, row.proj_n))
        row.emitted = len(row.text)
        row.pending.clear()

    def _drop(self, indices: Sequence[int]) -> None:
        """Remove rows; each hole below the new batch size takes the last surviving row (one row's copy)."""
        if not indices:
            return
        gone = set(indices)
        size = len(self._rows) - len(gone)
        if size == 0:
            self._reset_batch(keep_steering=True)
            return
        holes = sorted(i for i in gone if i < size)
        tail = [i for i in range(size, len(self._rows)) if i not in gone]
        assert self._slots is not None and len(holes) == len(tail)
        for hole, last in zip(holes, tail, strict=True):
            self._slots.move(last, hole, self._lengths[last])
            self._rows[hole], self._lengths[hole], self._next[hole] = (self._rows[last], self._lengths[last],
                                                                        self._next[last])
        del self._rows[size:], self._lengths[size:], self._next[size:]

    def _reset_batch(self, keep_steering: bool = False) -> None:
        self._rows, self._lengths, self._next = [], [], []
        if self._slots is not None and self._slots.cols > 4 * MIN_COLS:
            self._slots = None  # an idle server gives back what one long request made it grow to
        if not keep_steering and self._steering is not None:
            self._steering.close()
            self._steering = None
            self._steer_keys = self._steer_rows = None

    # -- steering -------------------------------------------------------------------------------------------------
    def _apply_steering(self, rows: Sequence[RowSteering]) -> None:
        key_rows = tuple(rows)
        if key_rows == self._steer_rows:
            return
        keys, specs = self.registry.specs(key_rows)
        if keys == self._steer_keys and self._steering is not None:
            self._steering.set_coefs([s.coefs for s in specs])
        else:
            if self._steering is not None:
                self._steering.close()
                self._steering = None
            steering = Steering(self.model, specs)
            steering.__enter__()
            self._steering = steering
            self._steer_keys = keys
        self._steer_rows = key_rows

    # -- events ---------------------------------------------------------------------------------------------------
    def _fail_all(self, message: str) -> None:
        with self._cond:
            waiting = list(self._waiting)
            self._waiting.clear()
        for req in {id(r): r for r in waiting + [row.req for row in self._rows]}.values():
            self._send(req, Failed(message))
        self._rows, self._lengths, self._next = [], [], []
