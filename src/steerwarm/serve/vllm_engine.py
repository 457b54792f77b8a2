"""`steerwarm serve --engine vllm`: vLLM's engine behind steerwarm's own HTTP layer, with the same interface and events
as the batching engine (`steerwarm.serve.engine.Engine`), so the API, the `@warmth=` suffix, the `steering` block,
errors and /metrics are the ones `--engine hf` serves.

vLLM runs in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`: a v1 `LLMEngine` whose engine core and worker live
here, stepped by our own engine thread), with steerwarm's plugin (`vllm_plugin`) steering each request by the extra
arguments we give it and collecting its warmth monitor readout.

Invariants:
- Only the engine thread touches the `LLMEngine` (add, step, abort): other threads only `submit` (append to a
  bounded queue under a lock) and `cancel` (set a flag). A cancelled request is aborted in vLLM at the next turn of
  the loop and sends nothing more.
- One steerwarm choice is one vLLM request (`n` choices are `n` requests, choice c seeded with seed + c, as the
  batching engine seeds its rows), fed the prompt's token ids as they are (`TokensPrompt`): the front end renders
  chat templates and tokenizes, exactly as for `--engine hf`.
- Steering: every vLLM request carries `extra_args` {"warmth", "steering" (the resolved raw entries), and a unique
  `steerwarm_readout` key}. The front end's registry is `vllm_plugin.registry_for(model folder)` with
  `STEERWARM_VECTORS` set to the server's vectors folder before the worker starts, the very registry (same process,
  same key) the worker steers with, so a request resolved here is resolved identically there.
- Warmth projection: the plugin's readout is the mean, over the tokens a request sampled, of the monitor layer's
  projection (the quantity the batching engine averages). A `ChoiceDone` carries it as projection_sum = mean x
  completion_tokens and projection_count = completion_tokens, so per-choice and pooled means (server.steering_info)
  weight choices by their tokens as with hf. Every readout key is taken once its request finishes or is aborted,
  so none accumulates.
- Events per request follow engine.py: one `PromptReady` before any `Delta` of any choice (choices that produce
  output before the prompt is ready hold it back), then `Delta`s (streaming only), then exactly one `ChoiceDone` per
  choice, or one `Failed` (after which nothing more is sent), unless cancelled.
- Choices read as the batching engine's do: text and stop strings from vLLM's detokenizer (DELTA outputs, stop
  strings held back until they cannot match), completion_tokens counting an end-of-sequence token but no logprob
  for it, finish reasons "stop" or "length"; any other ending (vLLM aborted it) is a `Failed`, never a silent stop.
- What vLLM cannot give the way our engine does is refused in `submit` with a ValueError (the server's 400: more
  than MAX_LOGPROBS alternatives), never silently dropped. `--device` must name the platform this vLLM build runs on.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steerwarm.model.load import LoadedModel, load_tokenizer, resolve
from steerwarm.serve.engine import (
    ChoiceDone,
    Delta,
    EngineLoop,
    EngineRequest,
    Failed,
    Handle,
    PromptReady,
    QueueFullError,
    Sink,
    TokenInfo,
    TopInfo,
)
from steerwarm.serve.registry import SteeringRegistry
from steerwarm.serve.text import TokenPieces, text_with_offsets
from steerwarm.serve.vllm_process import CPU_ENV  # vLLM's CPU settings for a small machine; a caller's own win

log = logging.getLogger("steerwarm.serve")

INSTALL_HINT = "vLLM is not installed in this environment: run `scripts/setup-vllm` (makes .venv-vllm) or " \
               "`pip install steerwarm[vllm]`, then start the server from that environment"
MAX_LOGPROBS = 20  # as OpenAI's top_logprobs limit


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


@dataclass(eq=False)
class _Req:
    spec: EngineRequest
    sink: Sink
    cancelled: bool = False
    prompt_sent: bool = False
    choices: list[_Choice] = field(default_factory=list)


@dataclass(eq=False)
class _Choice:
    req: _Req
    index: int  # the choice index (for a max_tokens 0 request with prompt logprobs: -1, it only reads the prompt)
    rid: str  # vLLM request id, also the plugin's readout key
    text: str = ""
    emitted: int = 0
    tokens: int = 0
    logprobs: list[TokenInfo] = field(default_factory=list)
    pending: list[TokenInfo] = field(default_factory=list)
    held: list[Any] = field(default_factory=list)  # outputs that came before the request's PromptReady


class VllmEngine(EngineLoop):
    """The `ServingEngine` interface over an in-process vLLM `LLMEngine` (see the module docstring)."""

    def __init__(self, loaded: LoadedModel, registry: SteeringRegistry, llm: Any, *, max_batch: int = 32,
                 max_queue: int = 256) -> None:
        config = llm.vllm_config
        super().__init__(max_batch, max_queue, int(config.model_config.max_model_len))
        self.loaded = loaded
        self.registry = registry
        self.llm = llm
        self.tokenizer = loaded.tokenizer
        self.tokenizer_lock = threading.Lock()
        self.pieces = TokenPieces(self.tokenizer)
        self.dtype = str(config.model_config.dtype).removeprefix("torch.")
        self.device = str(config.device_config.device_type) if getattr(config, "device_config", None) else "?"
        self.kernels_note = f"engine: vLLM (in-process, {self.dtype} on {self.device}, max_num_seqs {max_batch})"
        self._kv_bytes = _kv_cache_bytes(config)
        self._waiting: deque[_Req] = deque()
        self._active: list[_Req] = []  # requests handed to vLLM, in submission order (read under the lock)
        self._live: dict[str, _Choice] = {}  # engine thread only
        # statistics (read by /metrics)
        self.steps = 0
        self.prefills = 0  # prompts whose first output arrived (vLLM prefills them, possibly in chunks)
        self.generated_tokens = 0
        self.last_batch = 0
        self.kv_grows = 0  # vLLM allocates its KV cache blocks once
        # failures: a request failed alone (`_fail`) counts as a row failure, a failed vLLM step as a step failure
        self.row_failures = 0
        self.step_failures = 0

    # -- construction ---------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, model: str, vectors: Path | None, *, dtype: str = "float32", device: str | None = None,
               chat_template: Path | None = None, max_batch: int = 32, max_queue: int = 256,
               seed: int = 0) -> VllmEngine:
        """Start vLLM in this process on `model` (a steerwarm name, folder or cached hub id) with the plugin steering
        by the vectors in `vectors` (None: warmth 0 and no raw steering). Raises ModelNotFoundError / ValueError
        (a bad dtype or device), RuntimeError when vLLM is not installed."""
        if not vllm_available():
            raise RuntimeError(INSTALL_HINT)
        from steerwarm.model.device import placement

        name, path = resolve(model)
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the worker runs here: take_readout sees its readouts
        for key, value in CPU_ENV.items():
            os.environ.setdefault(key, value)
        from steerwarm.serve import vllm_plugin

        if vectors is not None:
            os.environ[vllm_plugin.ENV_VECTORS] = str(Path(vectors).resolve())
        else:
            os.environ.pop(vllm_plugin.ENV_VECTORS, None)
        from vllm.engine.arg_utils import EngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.llm_engine import LLMEngine

        platform = str(current_platform.device_type)
        where = placement(device or platform, dtype)
        if where.device.split(":")[0] != platform or where.device_map:
            raise ValueError(f"this vLLM build runs on {platform!r}; --device {device} is not available with "
                             "--engine vllm")
        vllm_plugin.register()
        vllm_plugin.collect_readouts()
        folder = str(path)
        registry = vllm_plugin.registry_for(folder)  # the worker's own registry (same process, same key)
        facts = vllm_plugin.folder_model(folder)  # read once per process, shared with registry_for
        args = EngineArgs(model=folder, tokenizer=folder, dtype=where.dtype, seed=seed, max_num_seqs=max_batch,
                          max_logprobs=MAX_LOGPROBS, enforce_eager=platform == "cpu", disable_log_stats=True)
        llm = LLMEngine.from_engine_args(args)
        loaded = LoadedModel(model=_skeleton(path), tokenizer=load_tokenizer(path, chat_template), name=name,
                             path=path, fingerprint=facts.fingerprint)
        return cls(loaded, registry, llm, max_batch=max_batch, max_queue=max_queue)

    # -- public API (any thread) ----------------------------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        """Requests whose choices do not all fit in the running batch (vLLM's max_num_seqs = --max-batch)."""
        with self._cond:
            return self._queued([*self._active, *self._waiting])

    def _queued(self, reqs: Sequence[_Req]) -> int:
        room = self.max_batch
        for i, r in enumerate(reqs):
            if r.spec.n > room:
                return len(reqs) - i
            room -= r.spec.n
        return 0

    @property
    def running_rows(self) -> int:
        with self._cond:
            return min(self.max_batch, sum(len(r.choices) for r in self._active))

    @property
    def kv_bytes(self) -> int:
        return self._kv_bytes

    def submit(self, requests: Sequence[EngineRequest], sinks: Sequence[Sink]) -> list[Handle]:
        """Queue requests (all or none); raises QueueFullError when the queue cannot take them, ValueError for what
        this engine cannot serve."""
        reqs = []
        for spec, sink in zip(requests, sinks, strict=True):
            self.check(spec)
            for what, k in (("top_logprobs", spec.params.logprobs), ("logprobs of the echoed prompt",
                                                                     spec.prompt_logprobs)):
                if k is not None and k > MAX_LOGPROBS:
                    raise ValueError(f"{what} must be at most {MAX_LOGPROBS} with --engine vllm, got {k}")
            reqs.append(_Req(spec, sink))
        with self._cond:
            if self._queued([*self._active, *self._waiting, *reqs]) > self.max_queue:
                raise QueueFullError(f"the server's queue is full ({self.max_queue} requests wait for a free batch "
                                     "row); retry later")
            self._waiting.extend(reqs)
            self._cond.notify()
        return [Handle(self, r) for r in reqs]

    thread_name = "steerwarm-vllm-engine"

    def _fail_all(self, message: str) -> None:
        with self._cond:
            reqs = [*self._active, *self._waiting]
            self._waiting.clear()
        for req in reqs:
            self._fail(req, message, alone=False)

    def close(self) -> None:
        """Shut vLLM's engine core down (its worker and KV cache)."""
        core = getattr(self.llm, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            try:
                core.shutdown()
            except Exception:  # already down
                log.debug("vLLM engine core shutdown failed", exc_info=True)

    # -- engine thread --------------------------------------------------------------------------------------------
    def _busy(self) -> bool:
        return bool(self._waiting or self._live)

    def step(self) -> None:
        """One turn: abort cancelled requests, hand new ones to vLLM, run one vLLM step and send its events."""
        self._abort([r for r in self._requests() if r.cancelled])
        with self._cond:
            new = list(self._waiting)
            self._waiting.clear()
            self._active += [r for r in new if not r.cancelled]
        for req in new:
            if not req.cancelled:
                self._add(req)
        if not self._live:
            return
        try:
            outputs = self.llm.step()
        except Exception as exc:  # keep serving: fail what was in flight
            log.exception("vLLM step failed")
            self.step_failures += 1
            for req in self._requests():
                self._fail(req, f"generation failed: {type(exc).__name__}: {exc}", alone=False)
            return
        self.steps += 1
        self.last_batch = min(self.max_batch, len(self._live))
        for out in outputs:
            choice = self._live.get(out.request_id)
            if choice is not None and not choice.req.cancelled:
                self._output(choice, out)

    def _requests(self) -> list[_Req]:
        with self._cond:
            return list(self._active)

    def _add(self, req: _Req) -> None:
        spec = req.spec
        p = spec.params
        if p.max_tokens == 0 and spec.prompt_logprobs is None:  # nothing for vLLM to compute
            self._prompt_ready(req, None)
            for c in range(spec.n):
                self._send(req, ChoiceDone(c, "length", "", "", (), 0, () if p.logprobs is not None else None, 0.0, 0))
            self._retire(req)
            return
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind, SamplingParams

        indices = [-1] if p.max_tokens == 0 else list(range(spec.n))
        steering = [{"vector": r.vector, "layers": list(r.layers), "coef": r.coef} for r in spec.steering.raw]
        try:
            for c in indices:
                rid = f"sw-{uuid.uuid4().hex}"
                params = SamplingParams(
                    n=1, max_tokens=max(p.max_tokens, 1), temperature=p.temperature, top_p=p.top_p,
                    stop=list(p.stop) or None, seed=(p.seed + max(c, 0)) if p.seed is not None else None,
                    logprobs=p.logprobs, prompt_logprobs=spec.prompt_logprobs if c <= 0 else None,
                    skip_special_tokens=True, output_kind=RequestOutputKind.DELTA,
                    extra_args={"warmth": spec.steering.warmth, "steering": steering, "steerwarm_readout": rid})
                choice = _Choice(req, c, rid)
                self.llm.add_request(rid, TokensPrompt(prompt_token_ids=list(spec.prompt_ids)), params)
                req.choices.append(choice)
                self._live[rid] = choice
        except Exception as exc:
            log.exception("vLLM refused a request")
            self._fail(req, f"generation failed: {type(exc).__name__}: {exc}")

    def _output(self, choice: _Choice, out: Any) -> None:
        req = choice.req
        if not req.prompt_sent:
            if req.spec.prompt_logprobs is not None and choice.index > 0:
                choice.held.append(out)  # choice 0 (or the prompt reader) brings the prompt's logprobs
                return
            self.prefills += 1
            self._prompt_ready(req, out.prompt_logprobs)
            for other in req.choices:
                held, other.held = other.held, []
                for o in held:
                    self._output(other, o)
        completion = out.outputs[0]
        ids = list(completion.token_ids)
        self.generated_tokens += len(ids)
        finished = bool(out.finished)
        if choice.index < 0:  # max_tokens 0: the prompt was all it was for
            if finished:
                self._drop(choice)
                p = req.spec.params
                for c in range(req.spec.n):
                    self._send(req, ChoiceDone(c, "length", "", "", (), 0, () if p.logprobs is not None else None,
                                               0.0, 0))
            return
        choice.tokens += len(ids)
        if req.spec.params.logprobs is not None and completion.logprobs:
            infos = self._infos(ids, list(completion.logprobs), [len(choice.text)] * len(ids),
                                req.spec.params.logprobs)
            choice.logprobs += infos
            choice.pending += infos
        choice.text += completion.text
        if not finished:
            if req.spec.stream and (len(choice.text) > choice.emitted or choice.pending):
                self._send(req, Delta(choice.index, choice.text[choice.emitted:], tuple(choice.pending)))
                choice.emitted = len(choice.text)
                choice.pending.clear()
            return
        self._drop(choice)
        mean = _take_readout(choice.rid)
        count = choice.tokens if mean is not None else 0
        reason = completion.finish_reason
        if reason not in ("stop", "length"):  # vLLM gave up on it (aborted, an error): never a silent "stop"
            self._fail(req, f"generation failed: vLLM ended choice {choice.index} with {reason!r}")
            return
        if reason == "stop" and not isinstance(completion.stop_reason, str) and choice.logprobs:
            # it ended on an end-of-sequence (or stop) token, which the batching engine reports no logprob for
            eos = choice.logprobs.pop()
            if choice.pending and choice.pending[-1] is eos:
                choice.pending.pop()
        logprobs = tuple(choice.logprobs) if req.spec.params.logprobs is not None else None
        self._send(req, ChoiceDone(choice.index, reason, choice.text, choice.text[choice.emitted:],
                                   tuple(choice.pending), choice.tokens, logprobs, (mean or 0.0) * count, count))

    def _prompt_ready(self, req: _Req, prompt_logprobs: Any) -> None:
        req.prompt_sent = True
        text = lp = None
        if req.spec.echo:
            text, offsets = self._prompt_text(req.spec.prompt_ids)
            if req.spec.prompt_logprobs is not None and prompt_logprobs:
                ids = list(req.spec.prompt_ids)
                first = self.pieces.get(ids[0])
                lp = (TokenInfo(ids[0], first[0], first[1], None, offsets[0], ()),
                      *self._infos(ids[1:], list(prompt_logprobs)[1:], offsets[1:], req.spec.prompt_logprobs))
        self._send(req, PromptReady(len(req.spec.prompt_ids), text, lp))

    def _prompt_text(self, prompt: Sequence[int]) -> tuple[str, list[int]]:
        with self.tokenizer_lock:
            return text_with_offsets(self.tokenizer, prompt)

    def _infos(self, ids: Sequence[int], per_token: Sequence[Any], offsets: Sequence[int], k: int
               ) -> list[TokenInfo]:
        """TokenInfo per token from vLLM's per-position {token id: Logprob}: the chosen token's logprob, and the
        `k` best ranked as its alternatives (vLLM adds the chosen token when it ranks below them)."""
        out = []
        for t, lps, offset in zip(ids, per_token, offsets, strict=False):
            lps = lps or {}
            chosen = lps.get(t)
            ranked = sorted((int(v.rank), int(i), float(v.logprob)) for i, v in lps.items()
                            if v.rank is not None and v.rank <= k)
            tops = tuple(TopInfo(i, *self.pieces.get(i), value) for _rank, i, value in ranked)
            tok, raw = self.pieces.get(t)
            out.append(TokenInfo(t, tok, raw, float(chosen.logprob) if chosen is not None else None, offset, tops))
        return out

    def _drop(self, choice: _Choice) -> None:
        self._live.pop(choice.rid, None)
        req = choice.req
        if all(c.rid not in self._live for c in req.choices):
            self._retire(req)

    def _retire(self, req: _Req) -> None:
        with self._cond:
            if req in self._active:
                self._active.remove(req)

    def _abort(self, reqs: Sequence[_Req]) -> None:
        ids = [c.rid for r in reqs for c in r.choices if c.rid in self._live]
        if ids:
            try:
                self.llm.abort_request(ids)
            except Exception:
                log.exception("vLLM abort failed")
        for rid in ids:
            self._live.pop(rid, None)
            _take_readout(rid)
        for r in reqs:
            self._retire(r)

    def _fail(self, req: _Req, message: str, *, alone: bool = True) -> None:
        self.row_failures += alone
        self._send(req, Failed(message))
        req.cancelled = True  # nothing more goes to a failed request
        self._abort([req])


def _take_readout(key: str) -> float | None:
    from steerwarm.serve.vllm_plugin import take_readout

    return take_readout(key)


def _skeleton(path: Path) -> Any:
    """The model's architecture on the meta device (no weights): what the front end reads of `loaded.model` is its
    config; vLLM holds the weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path, local_files_only=True)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]


def _kv_cache_bytes(config: Any) -> int:
    """Bytes of vLLM's KV cache (blocks x block size x layers x 2 x KV heads x head size x element size); 0 when
    the configuration does not say."""
    try:
        import torch

        cache, model, parallel = config.cache_config, config.model_config, config.parallel_config
        dtype = model.dtype if cache.cache_dtype == "auto" else getattr(torch, str(cache.cache_dtype), model.dtype)
        per_token = (2 * model.get_num_layers(parallel) * model.get_num_kv_heads(parallel) * model.get_head_size()
                     * torch.empty((), dtype=dtype).element_size())
        return int(cache.num_gpu_blocks or 0) * int(cache.block_size) * int(per_token)
    except Exception:
        return 0


