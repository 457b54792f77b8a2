"""The batching engine: one worker thread owns the model and decodes every running request in one forward pass per
step, each batch row steered with its own coefficients (continuous batching).

Invariants:
- Only the worker thread (or a test calling `step()` while no worker runs) touches the model, the KV cache and the
  steering hooks. Other threads only `submit` (append to a bounded queue under a lock) and `cancel` (set a flag).
- Batch state is four aligned things: `rows` (one per generated sequence), the DynamicCache whose per-layer
  keys/values are [rows, kv_heads, T, head_dim], the attention mask [rows, T] (0 = left padding) and the next input
  token per row. Every change (join, drop, trim) applies the same row index or column slice to all of them.
- Newcomers join between decode steps: their prompts are prefilled as a separate batch (left-padded among
  themselves, positions = cumsum(mask) - 1, as `generate` does), their first token is sampled, then their cache is
  left-padded to the running length and concatenated along the batch. Finished or cancelled rows are dropped by
  index-select, and columns that became padding for every row are trimmed. A row's positions never change, so its
  tokens are the ones it would produce alone, up to floating-point reordering in batched kernels.
- Steering: one `steerwarm.steering.Steering` over the keys (vector, layers) present in the batch, with one
  coefficient per row. Coefficients are recomputed (`set_coefs`) only when the batch's per-row steering changes;
  hooks are rebuilt only when the set of keys changes. Padding is never steered (Steering reads each call's mask).
- Warmth monitor: a hook registered on the monitor layer *before* any steering hook reads that layer's output
  before steering is added there, at the last position of every forward call, i.e. at the state that produces each
  generated token; its projection onto the unit warm direction divided by the layer's typical norm is averaged per
  row. At the first steered layer this depends only on the tokens, so it measures the text, not the injection.
- Sampling: temperature 0 is argmax; otherwise temperature, then top-p, then a draw from the row's own
  torch.Generator (seeded by the request's seed + choice index), so a seeded row's draws do not depend on the other
  rows of the batch.
- Every submitted request ends with exactly one `ChoiceDone` per choice, or a `Failed`, unless it was cancelled.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from steerwarm.model.anatomy import decoder_layers, hidden_of
from steerwarm.model.load import LoadedModel
from steerwarm.serve.registry import RowSteering, SpecKey, SteeringRegistry
from steerwarm.serve.text import IncrementalDecoder, StopMatcher, TokenPieces
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


class Handle:
    """What `submit` returns: lets the caller cancel (a disconnected client frees its rows at the next step)."""

    def __init__(self, engine: Engine, req: _Req) -> None:
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
        h = hidden_of(output)[:, -1, :].float()
        self.last = (h @ self.direction.to(h.device)) / self.norm

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


def _kv_layers(cache: DynamicCache) -> list[DynamicLayer]:
    # Engine.__init__ verified that this model's cache layers are plain DynamicLayers.
    return [layer for layer in cache.layers if isinstance(layer, DynamicLayer)]


def _left_pad(x: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    missing = length - x.shape[dim]
    if missing == 0:
        return x
    pad = [0, 0] * (x.dim() - 1 - dim) + [missing, 0]
    return F.pad(x, pad)


class Engine:
    def __init__(self, loaded: LoadedModel, registry: SteeringRegistry, *, max_batch: int = 32,
                 max_queue: int = 256) -> None:
        if max_batch < 1 or max_queue < 1:
            raise ValueError("max_batch and max_queue must be at least 1")
        self.loaded = loaded
        self.model = loaded.model
        self._net: Any = loaded.model  # for transformers methods that carry no type hints
        self.device = next(self.model.parameters()).device
        self.tokenizer = loaded.tokenizer
        self.registry = registry
        self.max_batch = max_batch
        self.max_queue = max_queue
        cfg = self.model.config
        self.context_length = int(getattr(cfg, "max_position_embeddings", 0) or 2048)
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
        probe = DynamicCache(config=cfg)
        if any(type(layer) is not DynamicLayer for layer in probe.layers):
            raise ValueError(f"{type(self.model).__name__} uses sliding-window or special cache layers; the batching "
                             "engine supports models whose KV cache is a plain DynamicCache (Llama-style)")
        self._cond = threading.Condition()
        self._waiting: deque[_Req] = deque()
        self._rows: list[_Row] = []
        self._cache: DynamicCache | None = None
        self._mask: torch.Tensor | None = None
        self._next: torch.Tensor | None = None
        self._steering: Steering | None = None
        self._steer_keys: tuple[SpecKey, ...] | None = None
        self._steer_rows: tuple[RowSteering, ...] | None = None
        self._monitor: _MonitorHook | None = None
        if registry.monitor is not None:
            mon = registry.monitor
            self._monitor = _MonitorHook(decoder_layers(self.model)[mon.layer], mon.direction, mon.norm)
        self._reserved = 0  # rows of requests taken from the queue and being prefilled
        self._thread: threading.Thread | None = None
        self._stopping = False
        # statistics (read by /metrics)
        self.steps = 0
        self.prefills = 0
        self.generated_tokens = 0
        self.last_batch = 0

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
            rows = r.spec.n if r.spec.params.max_tokens > 0 else 0
            if rows > room:
                return len(waiting) - i
            room -= rows
        return 0

    @property
    def running_rows(self) -> int:
        return len(self._rows)

    def submit(self, requests: Sequence[EngineRequest], sinks: Sequence[Sink]) -> list[Handle]:
        """Queue requests (all or none); raises QueueFullError when the waiting queue cannot take them all."""
        reqs = []
        for spec, sink in zip(requests, sinks, strict=True):
            if not spec.prompt_ids:
                raise ValueError("the prompt is empty")
            if not 1 <= spec.n <= self.max_batch:
                raise ValueError(f"n must be within [1, {self.max_batch}] (the server's --max-batch)")
            if len(spec.prompt_ids) + spec.params.max_tokens > self.context_length:
                raise ValueError(f"prompt ({len(spec.prompt_ids)} tokens) + max_tokens ({spec.params.max_tokens}) "
                                 f"exceeds the context length {self.context_length}")
            reqs.append(_Req(spec, sink, time.perf_counter(), left=spec.n))
        with self._cond:
            if self._queued([*self._waiting, *reqs]) > self.max_queue:
                raise QueueFullError(f"the server's queue is full ({self.max_queue} requests wait for a free batch "
                                     "row); retry later")
            self._waiting.extend(reqs)
            self._cond.notify()
        return [Handle(self, r) for r in reqs]

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="steerwarm-engine", daemon=True)
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

    def close(self) -> None:
        """Remove every hook this engine put on the model."""
        if self._steering is not None:
            self._steering.close()
            self._steering = None
            self._steer_keys = self._steer_rows = None
        if self._monitor is not None:
            self._monitor.handle.remove()
            self._monitor = None

    def run_until_idle(self, max_steps: int = 100_000) -> None:
        """Step until nothing is queued or running (for tests and scripts without the worker thread)."""
        for _ in range(max_steps):
            if not self._waiting and not self._rows:
                return
            self.step()
        raise RuntimeError(f"engine still busy after {max_steps} steps")

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    # -- worker ---------------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._waiting and not self._rows:
                    self._cond.wait()
                if self._stopping:
                    return
            self.step()

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
                rows = head.spec.n if head.spec.params.max_tokens > 0 else 0
                if rows > room:
                    break
                room -= rows
                self._reserved += rows
                out.append(self._waiting.popleft())
        return out

    def _admit(self, newcomers: list[_Req]) -> None:
        plain = [r for r in newcomers if r.spec.prompt_logprobs is None]
        groups = [[r] for r in newcomers if r.spec.prompt_logprobs is not None]
        # plain prompts are prefilled together, in chunks of similar padded size
        budget = max(2048, max((len(r.spec.prompt_ids) for r in plain), default=0))
        chunk: list[_Req] = []
        for r in sorted(plain, key=lambda r: len(r.spec.prompt_ids)):
            if chunk and (len(chunk) + 1) * len(r.spec.prompt_ids) > budget:
                groups.append(chunk)
                chunk = []
            chunk.append(r)
        if chunk:
            groups.append(chunk)
        for group in groups:
            self._prefill(group)

    def _prefill(self, group: list[_Req]) -> None:
        lengths = [len(r.spec.prompt_ids) for r in group]
        width = max(lengths)
        ids = torch.full((len(group), width), self.pad_id, dtype=torch.long, device=self.device)
        mask = torch.zeros((len(group), width), dtype=torch.long, device=self.device)
        for i, r in enumerate(group):
            ids[i, width - lengths[i]:] = torch.tensor(r.spec.prompt_ids, dtype=torch.long, device=self.device)
            mask[i, width - lengths[i]:] = 1
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        self._apply_steering([r.spec.steering for r in group])
        cache = DynamicCache(config=self.model.config)
        full = group[0].spec.prompt_logprobs is not None  # such groups hold one request
        if full:
            out = self._net.get_decoder()(input_ids=ids, attention_mask=mask, position_ids=positions,
                                           past_key_values=cache, use_cache=True)
            hidden = out.last_hidden_state
            last = self._lm_head(hidden[:, -1, :])
        else:
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                                use_cache=True, logits_to_keep=1).logits
            last = logits[:, -1, :].float()
        self.prefills += 1
        proj = self._monitor.take() if self._monitor is not None else None
        rows: list[_Row] = []
        src: list[int] = []
        for i, req in enumerate(group):
            if req.cancelled:
                continue
            text = None
            prompt_lp = None
            if req.spec.echo:
                text, offsets = self._prompt_text(req.spec.prompt_ids)
                if full:
                    prompt_lp = self._prompt_logprobs(req.spec, hidden[i], offsets)
            self._send(req, PromptReady(len(req.spec.prompt_ids), text, prompt_lp))
            if req.spec.params.max_tokens == 0:
                for c in range(req.spec.n):
                    self._send(req, ChoiceDone(c, "length", "", "", (), 0, () if req.spec.params.logprobs is not None
                                               else None, 0.0, 0))
                continue
            for c in range(req.spec.n):
                rows.append(self._new_row(req, c))
                src.append(i)
        if not rows:
            return
        index = torch.tensor(src, dtype=torch.long, device=self.device)
        row_logits = last.index_select(0, index)
        row_proj = proj.index_select(0, index) if proj is not None else None
        tokens = self._choose(rows, row_logits)
        alive = [j for j, row in enumerate(rows)
                 if not self._advance(row, tokens[j], row_logits[j], row_proj[j] if row_proj is not None else None)]
        if not alive:
            return
        keep = index[alive]
        for layer in _kv_layers(cache):
            if layer.keys is not None and layer.values is not None:
                layer.keys = layer.keys.index_select(0, keep)
                layer.values = layer.values.index_select(0, keep)
        self._join(cache, mask.index_select(0, keep),
                   torch.tensor([tokens[j] for j in alive], dtype=torch.long, device=self.device),
                   [rows[j] for j in alive])

    def _new_row(self, req: _Req, choice: int) -> _Row:
        p = req.spec.params
        gen = None
        if p.temperature > 0:
            seed = (p.seed + choice) if p.seed is not None else secrets.randbits(63)
            gen = torch.Generator(device=self.device).manual_seed(seed % (2**63))
        return _Row(req, choice, gen, IncrementalDecoder(self.tokenizer, skip_special_tokens=True),
                    StopMatcher(p.stop))

    def _lm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        head = self._net.get_output_embeddings()
        assert head is not None
        logits: torch.Tensor = head(hidden).float()
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def _prompt_text(self, prompt: Sequence[int]) -> tuple[str, list[int]]:
        dec = IncrementalDecoder(self.tokenizer, skip_special_tokens=False)
        offsets = []
        with self.tokenizer_lock:
            for t in prompt:
                offsets.append(len(dec.text))
                dec.push(t)
            dec.flush()
        return dec.text, offsets

    def _prompt_logprobs(self, spec: EngineRequest, hidden: torch.Tensor, offsets: list[int]) -> tuple[TokenInfo, ...]:
        k = spec.prompt_logprobs or 0
        ids = spec.prompt_ids
        pad = hidden.shape[0] - len(ids)
        out: list[TokenInfo] = []
        tok, raw = self.pieces.get(ids[0])
        out.append(TokenInfo(ids[0], tok, raw, None, offsets[0], ()))
        target = torch.tensor(ids[1:], dtype=torch.long, device=self.device)
        for start in range(0, len(ids) - 1, PROMPT_LOGPROB_CHUNK):
            stop = min(start + PROMPT_LOGPROB_CHUNK, len(ids) - 1)
            lp = torch.log_softmax(self._lm_head(hidden[pad + start:pad + stop]), dim=-1)
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

    def _join(self, cache: DynamicCache, mask: torch.Tensor, next_tokens: torch.Tensor, rows: list[_Row]) -> None:
        if not self._rows or self._cache is None or self._mask is None or self._next is None:
            self._cache, self._mask, self._next, self._rows = cache, mask, next_tokens, rows
            return
        width = max(self._mask.shape[1], mask.shape[1])
        for mine, theirs in zip(_kv_layers(self._cache), _kv_layers(cache), strict=True):
            if mine.keys is None or mine.values is None or theirs.keys is None or theirs.values is None:
                continue
            mine.keys = torch.cat([_left_pad(mine.keys, width, 2), _left_pad(theirs.keys, width, 2)], dim=0)
            mine.values = torch.cat([_left_pad(mine.values, width, 2), _left_pad(theirs.values, width, 2)], dim=0)
        self._mask = torch.cat([_left_pad(self._mask, width, 1), _left_pad(mask, width, 1)], dim=0)
        self._next = torch.cat([self._next, next_tokens])
        self._rows = self._rows + rows

    # -- decoding -------------------------------------------------------------------------------------------------
    def _decode(self) -> None:
        assert self._cache is not None and self._mask is not None and self._next is not None
        rows = self._rows
        self._apply_steering([r.req.spec.steering for r in rows])
        mask = torch.cat([self._mask, self._mask.new_ones((len(rows), 1))], dim=1)
        positions = mask.sum(dim=1, keepdim=True) - 1
        logits = self.model(input_ids=self._next[:, None], attention_mask=mask, position_ids=positions,
                            past_key_values=self._cache, use_cache=True).logits[:, -1, :].float()
        self._mask = mask
        self.steps += 1
        self.last_batch = len(rows)
        proj = self._monitor.take() if self._monitor is not None else None
        tokens = self._choose(rows, logits)
        done = [i for i, row in enumerate(rows)
                if self._advance(row, tokens[i], logits[i], float(proj[i]) if proj is not None else None)]
        self._next = torch.tensor(tokens, dtype=torch.long, device=self.device)
        self._drop(done)

    def _choose(self, rows: Sequence[_Row], logits: torch.Tensor) -> list[int]:
        tokens: list[int] = logits.argmax(dim=-1).tolist()
        for i, row in enumerate(rows):
            p = row.params
            if p.temperature > 0:
                tokens[i] = _sample(logits[i], p.temperature, p.top_p, row.generator)
        return tokens

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
        if not indices:
            return
        gone = set(indices)
        keep = [i for i in range(len(self._rows)) if i not in gone]
        if not keep:
            self._reset_batch(keep_steering=True)
            return
        assert self._cache is not None and self._mask is not None and self._next is not None
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        mask = self._mask.index_select(0, index)
        real = mask.any(dim=0).nonzero()
        first = int(real[0]) if real.numel() else 0
        for layer in _kv_layers(self._cache):
            if layer.keys is not None and layer.values is not None:
                layer.keys = layer.keys.index_select(0, index)[:, :, first:, :]
                layer.values = layer.values.index_select(0, index)[:, :, first:, :]
        self._mask = mask[:, first:]
        self._next = self._next.index_select(0, index)
        self._rows = [self._rows[i] for i in keep]

    def _reset_batch(self, keep_steering: bool = False) -> None:
        self._rows = []
        self._cache = self._mask = self._next = None
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
    def _send(self, req: _Req, event: Event) -> None:
        if req.cancelled:
            return
        try:
            req.sink(event)
        except Exception:  # a sink that cannot take events (closed loop, gone client) cancels its request
            log.debug("sink failed; cancelling its request", exc_info=True)
            req.cancelled = True

    def _fail_all(self, message: str) -> None:
        with self._cond:
            waiting = list(self._waiting)
            self._waiting.clear()
        for req in {id(r): r for r in waiting + [row.req for row in self._rows]}.values():
            self._send(req, Failed(message))
        self._rows = []
