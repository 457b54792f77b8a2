"""The warmth dial inside vLLM: a general plugin (entry point `vllm.general_plugins`) that gives a plain
`vllm serve MODEL` per-request `warmth` and raw `steering`, with continuous strength and no slots.

Set `STEERWARM_VECTORS=DIR` (a folder with a calibrated `warm`/`cold` pair made for that model) and send, with chat
or completions, streaming or not, either top-level fields (`{"warmth": 0.5}`, `{"steering": {...}}`, as steerwarm's
own server takes them) or vLLM's per-request extra arguments (`{"vllm_xargs": {"warmth": 0.5}}`; a `steering`
block there is a JSON string, since vLLM's xargs hold only scalars and lists).

Where it hooks into vLLM (0.32, the v1 GPU model runner and its CPU subclass):
- front end (API server process): the chat and completion handlers check a request's fields against the vectors
  before they start (a bad one is a 400 error object, streaming or not); `to_sampling_params` copies top-level
  fields into `SamplingParams.extra_args`; `InputProcessor._validate_params` checks them again (offline
  `LLM.generate` passes only through there), so nothing unresolvable reaches the engine;
- worker: after `load_model`, the steered decoder layers (every layer at which a registered vector has a direction)
  and the monitor layer get a thin forward wrapper that calls `steerwarm::steer_add` / `steerwarm::project`
  (custom operators: one opaque node each for torch.compile, safe inside CUDA graphs); `_prepare_inputs` fills the
  per-token coefficient buffers for the step (`steerwarm.steer.tokenwise.TokenSteering`) before the forward pass.

Invariants:
- Vectors are registered exactly as `steerwarm serve` registers them (`SteeringRegistry.from_dir`), against the
  fingerprint read from the served model's files (`fingerprint_files`), and a request is resolved by the same
  `SteeringRegistry.resolve`, so the same body means the same steering on both servers. A vector made for another
  model is skipped with its reason, and warmth other than 0 is then refused with that reason.
- Warmth 0 without raw entries adds exactly zero at every steered layer (a zero coefficient row), so the plugin's
  output equals vLLM's without it; with no vectors registered nothing is wrapped at all.
- Each scheduled token of a request, prefill chunk or decode, gets the request's coefficients; padding gets zeros.
  A batch with thousands of distinct warmth values costs what one value costs: the per-step work is one row lookup
  per request and one buffer copy, the forward one [n, K] x [K, hidden] product per steered layer.
- A request whose steering cannot be resolved never reaches the worker through the front end; if one does (a
  direct engine client), the worker logs an error and steers that request by nothing rather than stopping the engine.
- Readouts (the warmth monitor: mean projection per response, as steerwarm's engine measures it) are collected
  only where an in-process engine turned them on (`collect_readouts`, `steerwarm serve --engine vllm`, which takes
  each one when its request ends) and only for requests that carry a `steerwarm_readout` key in their extra
  arguments; a plain `vllm serve` stores none, whatever a client sends.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from steerwarm.serve.errors import APIError
from steerwarm.serve.registry import RowSteering, SteeringRegistry
from steerwarm.steer.tokenwise import LayerDirections, TokenSteering

log = logging.getLogger("steerwarm.vllm")

ENV_VECTORS = "STEERWARM_VECTORS"
READOUT_KEY = "steerwarm_readout"
FIELDS = ("warmth", "steering")


# -- the served model and its vectors ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class FolderModel:
    """The facts a registry checks vectors against, read from a model folder without loading the weights."""

    path: Path
    fingerprint: str
    hidden_size: int
    num_layers: int

    @classmethod
    def read(cls, model: str) -> FolderModel:
        from transformers import AutoConfig

        from steerwarm.model.load import fingerprint_files

        path = model_folder(model)
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        return cls(path, fingerprint_files(path), int(text.hidden_size), int(text.num_hidden_layers))


@functools.cache
def folder_model(model: str) -> FolderModel:
    """`FolderModel.read(model)`, once per process (the front end and an in-process worker share it)."""
    return FolderModel.read(model)


def model_folder(model: str) -> Path:
    """vLLM's `model` argument as a local folder: a path, or a hub id already in the local cache (never fetched)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model, local_files_only=True))


_registries: dict[str, SteeringRegistry] = {}
_registry_lock = threading.Lock()


def registry_for(model: str) -> SteeringRegistry:
    """The vectors in $STEERWARM_VECTORS that fit `model` (once per process and model)."""
    with _registry_lock:
        reg = _registries.get(model)
        if reg is None:
            folder = os.environ.get(ENV_VECTORS) or None
            facts = folder_model(model) if folder else None
            reg = (SteeringRegistry.from_dir(folder, facts) if facts is not None else
                   SteeringRegistry({}, None, dial_note=f"warmth dial disabled: {ENV_VECTORS} is not set",
                                    num_layers=0))
            log.info("steerwarm: %s (%d vectors: %s)", reg.dial_note, len(reg.vectors), ", ".join(sorted(reg.vectors)))
            _registries[model] = reg
        return reg


# -- one request's steering ---------------------------------------------------------------------------------------
def row_steering(args: Mapping[str, Any] | None, registry: SteeringRegistry) -> RowSteering:
    """Resolve a request's `warmth` / `steering` extra arguments; raises `APIError` (400) when they are wrong."""
    from pydantic import ValidationError

    from steerwarm.serve.protocol import RawSteering

    args = args or {}
    warmth = args.get("warmth", 0.0)
    if warmth is None:
        warmth = 0.0
    if isinstance(warmth, bool) or not isinstance(warmth, int | float) or not math.isfinite(warmth):
        raise APIError(400, f"warmth must be a finite number, got {warmth!r}", param="warmth", code="invalid_warmth")
    steering = args.get("steering")
    if isinstance(steering, str):
        try:
            steering = json.loads(steering)
        except ValueError:
            raise APIError(400, "steering (in vllm_xargs) must be a JSON object or list of objects", param="steering",
                           code="invalid_steering") from None
    entries = [] if steering is None else steering if isinstance(steering, list) else [steering]
    raw: list[tuple[str, list[int] | None, float]] = []
    for i, entry in enumerate(entries):
        try:
            r = RawSteering.model_validate(entry)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first.get("loc", ()))
            raise APIError(400, f"steering[{i}]{'.' + where if where else ''}: {first.get('msg')}",
                           param=f"steering[{i}]", code="invalid_steering") from None
        raw.append((r.vector, r.layers, r.coef))
    return registry.resolve(float(warmth), raw)


def request_fields(request: Any) -> dict[str, Any]:
    """A vLLM OpenAI request's steering fields: top-level `warmth` / `steering` (kept by vLLM as extra fields) and the
    same keys in `vllm_xargs`; a field given in both places is a 400."""
    extra = getattr(request, "model_extra", None) or {}
    xargs = getattr(request, "vllm_xargs", None) or {}
    found = {k: extra[k] for k in FIELDS if k in extra}
    clash = [k for k in found if k in xargs]
    if clash:
        raise APIError(400, f"{clash[0]} is given both in the body and in vllm_xargs; give it once", param=clash[0],
                       code="duplicate_parameter")
    return {**{k: xargs[k] for k in FIELDS if k in xargs}, **found}


def _fold_body_fields(request: Any, params: Any) -> Any:
    """Copy the top-level fields into the sampling parameters' extra arguments, where the input processor's
    validation and the worker read them (`vllm_xargs` are there already)."""
    fields = request_fields(request)
    if fields:
        params.extra_args = {**(params.extra_args or {}), **fields}
    return params


def _validation_error(exc: APIError) -> Exception:
    from vllm.exceptions import VLLMValidationError

    error: Exception = VLLMValidationError(exc.message, parameter=exc.param)
    return error


# -- the worker side ----------------------------------------------------------------------------------------------
def decoder_layers(model: torch.nn.Module, num_layers: int) -> torch.nn.ModuleList:
    """The ModuleList of decoder layers in a vLLM model (`model.model.layers` in most families)."""
    found = [m for name, m in model.named_modules()
             if isinstance(m, torch.nn.ModuleList) and name.split(".")[-1] in ("layers", "h", "blocks")
             and len(m) == num_layers]
    if len(found) != 1:
        raise TypeError(f"{type(model).__name__}: cannot find its {num_layers} decoder layers (found {len(found)} "
                        "candidate lists)")
    return found[0]


class WorkerSteering:
    """The plugin's state in one model runner: registry, token buffers, per-request rows, readouts."""

    def __init__(self, runner: Any) -> None:
        self.registry = registry_for(runner.model_config.model)
        reg = self.registry
        by_layer: dict[int, list[str]] = {}
        for name, vec in sorted(reg.vectors.items()):
            for layer in vec.directions:
                by_layer.setdefault(layer, []).append(name)
        layers = [LayerDirections(layer, tuple(names),
                                  torch.stack([reg.vectors[n].directions[layer].float() for n in names]),
                                  tuple(float(reg.vectors[n].norms[layer]) for n in names))
                  for layer, names in sorted(by_layer.items())]
        capture = int(getattr(runner.compilation_config, "max_cudagraph_capture_size", 0) or 0)
        monitor = None
        if reg.monitor is not None:
            monitor = (reg.monitor.layer, reg.monitor.direction, reg.monitor.norm)
        self.tokens = TokenSteering(layers, max_tokens=max(int(runner.max_num_tokens), capture) + 8,
                                    device=runner.device, monitor=monitor)
        self._rows: dict[str, np.ndarray] = {}
        self._readout_keys: dict[str, str | None] = {}
        self._pending: list[tuple[str, int]] = []
        self._wrap(runner.model)

    def _wrap(self, model: torch.nn.Module) -> None:
        layers = decoder_layers(model, self.registry.num_layers)
        steered = self.tokens.columns
        wanted = set(steered)
        if self.tokens.monitor_layer is not None:
            wanted.add(self.tokens.monitor_layer)
        for index in sorted(wanted):
            layer = layers[index]
            layer.forward = _steered_forward(layer.forward, self.tokens, index,
                                             steer=index in steered,
                                             monitor=index == self.tokens.monitor_layer)
        log.info("steerwarm: steering %d layers (%d directions) and monitoring layer %s", len(steered),
                 self.tokens.width, self.tokens.monitor_layer)

    def _row(self, req_id: str, params: Any) -> np.ndarray:
        row = self._rows.get(req_id)
        if row is not None:
            return row
        args = getattr(params, "extra_args", None) if params is not None else None
        try:
            steering = row_steering(args, self.registry)
        except APIError as exc:  # unreachable through the validated front ends
            log.error("steerwarm: request %s steers by nothing: %s", req_id, exc.message)
            steering = RowSteering()
        row = self.tokens.row(_layer_coefs(steering, self.registry))
        self._rows[req_id] = row
        key = (args or {}).get(READOUT_KEY) if _collect_readouts else None
        self._readout_keys[req_id] = str(key) if key is not None else None
        return row

    def prepare(self, runner: Any, scheduler_output: Any, counts: np.ndarray) -> None:
        for req_id in scheduler_output.finished_req_ids:
            self._rows.pop(req_id, None)
            self._readout_keys.pop(req_id, None)
        req_ids = runner.input_batch.req_ids[: runner.input_batch.num_reqs]
        rows = np.stack([self._row(r, runner.requests[r].sampling_params) for r in req_ids])
        self.tokens.fill(rows, counts)
        self._pending = []
        end = 0
        for req_id, n in zip(req_ids, counts, strict=True):
            end += int(n)
            key = self._readout_keys.get(req_id)
            if key is None:
                continue
            state = runner.requests[req_id]
            if state.num_computed_tokens + int(n) >= len(state.prompt_token_ids or ()):  # this step samples
                self._pending.append((key, end - 1))
        self.tokens.reading = bool(self._pending)

    def collect(self) -> None:
        if not self._pending or self.tokens.monitor_layer is None:
            return
        values = self.tokens.readout.cpu()
        with _readout_lock:
            for key, index in self._pending:
                total, count = _readouts.get(key, (0.0, 0))
                _readouts[key] = (total + float(values[index]), count + 1)
        self._pending = []


def _layer_coefs(steering: RowSteering, registry: SteeringRegistry) -> dict[int, dict[str, float]]:
    """Raw coefficient per (layer, vector name) of one request: the dial's warm/cold terms plus raw entries."""
    out: dict[int, dict[str, float]] = {}
    for term, _source in registry.terms(steering):
        for layer in term.layers:
            per = out.setdefault(layer, {})
            per[term.vector] = per.get(term.vector, 0.0) + term.coef
    return out


def _steered_forward(forward: Callable[..., Any], tokens: TokenSteering, layer: int, *, steer: bool,
                     monitor: bool) -> Callable[..., Any]:
    @functools.wraps(forward)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        out = forward(*args, **kwargs)
        pair = isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)
        hidden = out[0] if pair else out
        if monitor:
            tokens.read(hidden + out[1] if pair else hidden)  # the residual stream before this layer's steering
        if steer:
            hidden = tokens.apply(layer, hidden)
        return (hidden, out[1]) if pair else hidden

    return wrapped


_readouts: dict[str, tuple[float, int]] = {}
_readout_lock = threading.Lock()
_collect_readouts = False


def collect_readouts() -> None:
    """Turn readout collection on in this process: only an in-process engine that takes each key once its request
    ends calls this, so a plain `vllm serve` never stores readouts nobody will take."""
    global _collect_readouts
    _collect_readouts = True


def take_readout(key: str) -> float | None:
    """The mean monitor projection collected for a readout key (in-process engines only); forgets it."""
    with _readout_lock:
        total, count = _readouts.pop(key, (0.0, 0))
    return total / count if count else None


# -- installing the patches -------------------------------------------------------------------------------------------
_registered = False


def register() -> None:
    """vLLM's plugin entry point: patch the front end and the model runner (idempotent, every process)."""
    global _registered
    if _registered:
        return
    _registered = True
    _patch_front_end()
    _patch_runner()


def _patch_front_end() -> None:
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.entrypoints.openai.chat_completion.serving import OpenAIServingChat
    from vllm.entrypoints.openai.completion.protocol import CompletionRequest
    from vllm.entrypoints.openai.completion.serving import OpenAIServingCompletion
    from vllm.sampling_params import SamplingParams
    from vllm.v1.engine.input_processor import InputProcessor

    for cls in (ChatCompletionRequest, CompletionRequest):
        original = cls.to_sampling_params

        def to_sampling_params(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            return _fold_body_fields(self, _original(self, *args, **kwargs))

        cls.to_sampling_params = to_sampling_params

    # Checked again before the handler starts, so a streaming request gets its 400 as an HTTP status rather than as
    # an error event inside a 200 stream (the input processor runs only once the stream has begun).
    for serving, method in ((OpenAIServingChat, "create_chat_completion"), (OpenAIServingCompletion,
                                                                            "create_completion")):
        handler = getattr(serving, method)

        async def checked(self: Any, request: Any, *args: Any, _handler: Any = handler, **kwargs: Any) -> Any:
            try:
                fields = request_fields(request)
                if fields:
                    row_steering(fields, registry_for(self.model_config.model))
            except APIError as exc:
                return self.create_error_response(exc.message, param=exc.param)
            return await _handler(self, request, *args, **kwargs)

        setattr(serving, method, checked)

    validate = InputProcessor._validate_params

    def _validate_params(self: Any, params: Any, *args: Any, **kwargs: Any) -> Any:
        result = validate(self, params, *args, **kwargs)
        if isinstance(params, SamplingParams) and params.extra_args and any(k in params.extra_args for k in FIELDS):
            try:
                row = row_steering(params.extra_args, registry_for(self.model_config.model))
                if (row.warmth or row.raw) and getattr(self.vllm_config, "use_v2_model_runner", False):
                    raise APIError(400, "the steerwarm plugin hooks vLLM's v1 model runner, and this server runs the "
                                   "v2 runner (VLLM_USE_V2_MODEL_RUNNER=1): restart without it to steer",
                                   param="warmth", code="runner_unsupported")
            except APIError as exc:
                raise _validation_error(exc) from None
        return result

    InputProcessor._validate_params = _validate_params


def _patch_runner() -> None:
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    classes: list[type] = [GPUModelRunner]
    try:
        from vllm.v1.worker.cpu_model_runner import CPUModelRunner

        classes.append(CPUModelRunner)
    except ImportError:  # a build without the CPU runner
        pass
    for cls in classes:
        if "load_model" not in cls.__dict__:
            continue
        load = cls.__dict__["load_model"]

        def load_model(self: Any, *args: Any, _load: Any = load, **kwargs: Any) -> Any:
            result = _load(self, *args, **kwargs)
            if getattr(self, "_steerwarm", None) is None:
                reg = registry_for(self.model_config.model)
                self._steerwarm = WorkerSteering(self) if reg.vectors else False
            return result

        cls.load_model = load_model  # type: ignore[attr-defined]

    prepare = GPUModelRunner._prepare_inputs

    def _prepare_inputs(self: Any, scheduler_output: Any, num_scheduled_tokens: np.ndarray) -> Any:
        state = getattr(self, "_steerwarm", None)
        if state:
            state.prepare(self, scheduler_output, num_scheduled_tokens)
        return prepare(self, scheduler_output, num_scheduled_tokens)

    GPUModelRunner._prepare_inputs = _prepare_inputs

    execute = GPUModelRunner.execute_model

    def execute_model(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = execute(self, *args, **kwargs)
        state = getattr(self, "_steerwarm", None)
        if state:
            state.collect()
        return out

    GPUModelRunner.execute_model = execute_model
