"""Wire protocol: pydantic models mirroring OpenAI's chat and legacy completions APIs, plus steerwarm's extension
fields (`warmth`, `steering` on requests; a `steering` block on responses).

Invariants:
- Requests are parsed strictly (`extra="forbid"`, `strict=True`): an unknown field, a wrong type or a value out of
  range is a 400 naming the parameter, never coerced or dropped.
- Every OpenAI parameter this server does not implement is declared, and accepted only at its default value
  (`UNSUPPORTED`); anything else is refused with a message naming it. Nothing is silently ignored. The only fields
  accepted without effect are opaque client identifiers (`user`, `safety_identifier`, `prompt_cache_key`), which
  never change an output.
- Response models carry exactly OpenAI's fields (so the official client parses them) plus `steering`, which every
  response (and the final chunk of every stream) includes.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from steerwarm.serve.errors import APIError
from steerwarm.steer.dial import split_warmth_suffix

RAW_COEF_LIMIT = 10.0
MAX_TOP_LOGPROBS = 20
MAX_STOP = 16

# Parameter -> the values that mean "feature not used". Anything else is refused (see the module invariants).
UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "presence_penalty": (0, 0.0),
    "frequency_penalty": (0, 0.0),
    "logit_bias": ({},),
    "tools": ([],),
    "tool_choice": ("none", "auto"),
    "parallel_tool_calls": (True, False),
    "functions": ([],),
    "function_call": ("none", "auto"),
    "response_format": ({"type": "text"},),
    "audio": (),
    "modalities": (["text"],),
    "prediction": (),
    "reasoning_effort": (),
    "web_search_options": (),
    "verbosity": (),
    "service_tier": ("auto", "default"),
    "store": (False,),
    "metadata": ({},),
    "moderation": (),
    "prompt_cache_options": (),
    "prompt_cache_retention": (),
    "best_of": (1,),
    "suffix": ("",),
    "name": (),  # a chat participant name: the chat template cannot show it, so it would be silently dropped
}


def _refuse_unsupported(value: Any, info: ValidationInfo) -> Any:
    name = info.field_name or "?"
    if value is not None and not any(value == d for d in UNSUPPORTED[name]):
        raise PydanticCustomError(
            "unsupported_parameter",
            "parameter '{name}' is not supported by this server (got {value}); remove it or set it to its default",
            {"name": name, "value": repr(value)[:80]},
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RawSteering(_Strict):
    """Research control: add `coef` x typical norm x the unit direction of a registered vector at `layers`."""

    vector: str = Field(min_length=1, max_length=200, description="A registered vector name (see GET /v1/models).")
    coef: float = Field(description="Raw coefficient, in units of the layer's typical residual norm.")
    layers: list[int] | None = Field(None, min_length=1, max_length=512,
                                     description="Layers to steer (default: the vector's own default layers).")

    @field_validator("coef")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v) or abs(v) > RAW_COEF_LIMIT:
            raise PydanticCustomError("coef_range", "coef must be finite and within [-{lim}, {lim}]",
                                      {"lim": RAW_COEF_LIMIT})
        return v


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    _check_name = field_validator("name")(_refuse_unsupported)

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content)


class StreamOptions(_Strict):
    include_usage: bool = False


class _Common(_Strict):
    model: str = Field(min_length=1, max_length=300)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=128)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**64)
    max_tokens: int | None = Field(None, ge=0)
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    # steerwarm extensions
    warmth: float | None = Field(None, description="Warmth dial value (calibrated units; 0 = the base model).")
    steering: RawSteering | list[RawSteering] | None = Field(None, description="Raw steering by registered vector.")
    # declared so they can be refused by name unless at their default
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None

    _check_unsupported = field_validator("presence_penalty", "frequency_penalty", "logit_bias")(_refuse_unsupported)

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > MAX_STOP:
            raise PydanticCustomError("stop_count", "at most {n} stop sequences are allowed", {"n": MAX_STOP})
        if any(not s or len(s) > 256 for s in stops):
            raise PydanticCustomError("stop_value", "stop sequences must be non-empty strings of at most 256 "
                                      "characters", {})
        return v

    @field_validator("warmth")
    @classmethod
    def _finite_warmth(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise PydanticCustomError("warmth_value", "warmth must be a finite number", {})
        return v

    @model_validator(mode="after")
    def _stream_options_need_stream(self) -> _Common:
        if self.stream_options is not None and not self.stream:
            raise PydanticCustomError("stream_options", "stream_options is only allowed when stream is true", {})
        return self

    def stop_list(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    def steering_list(self) -> list[RawSteering]:
        if self.steering is None:
            return []
        return list(self.steering) if isinstance(self.steering, list) else [self.steering]


class ChatCompletionRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    tools: Any = None
    tool_choice: Any = None
    parallel_tool_calls: Any = None
    functions: Any = None
    function_call: Any = None
    response_format: Any = None
    audio: Any = None
    modalities: Any = None
    prediction: Any = None
    reasoning_effort: Any = None
    web_search_options: Any = None
    verbosity: Any = None
    service_tier: Any = None
    store: Any = None
    metadata: Any = None
    moderation: Any = None
    prompt_cache_options: Any = None
    prompt_cache_retention: Any = None

    _check_chat_unsupported = field_validator(
        "tools", "tool_choice", "parallel_tool_calls", "functions", "function_call", "response_format", "audio",
        "modalities", "prediction", "reasoning_effort", "web_search_options", "verbosity", "service_tier", "store",
        "metadata", "moderation", "prompt_cache_options", "prompt_cache_retention",
    )(_refuse_unsupported)

    @model_validator(mode="after")
    def _chat_rules(self) -> ChatCompletionRequest:
        if self.max_tokens == 0:
            raise PydanticCustomError("max_tokens", "max_tokens must be at least 1 for chat completions", {})
        if (self.max_tokens is not None and self.max_completion_tokens is not None
                and self.max_tokens != self.max_completion_tokens):
            raise PydanticCustomError("max_tokens", "max_tokens and max_completion_tokens disagree; send one", {})
        if self.top_logprobs is not None and not self.logprobs:
            raise PydanticCustomError("top_logprobs", "top_logprobs needs logprobs: true", {})
        return self

    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_Common):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    best_of: int | None = None
    suffix: str | None = None

    _check_completion_unsupported = field_validator("best_of", "suffix")(_refuse_unsupported)


# -- responses ------------------------------------------------------------------------------------------------------
class AppliedVector(BaseModel):
    name: str
    layers: list[int]
    coef: float
    source: Literal["dial", "request"]


class MonitorInfo(BaseModel):
    vector: str
    layer: int


class SteeringInfo(BaseModel):
    """What steered this response, and the warmth monitor: the mean projection of the residual stream onto the warm
    direction at the monitor layer, over the positions that produced the generated tokens, divided by the layer's
    typical norm (measured before any steering is added at that layer; see engine.py)."""

    warmth: float
    vectors: list[AppliedVector]
    warmth_projection: float | None
    warmth_projection_per_choice: list[float | None]
    monitor: MonitorInfo | None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class ChatTokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[ChatTokenLogprob] | None
    refusal: None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None
    finish_reason: Literal["stop", "length"]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChatChoice]
    usage: Usage
    steering: SteeringInfo


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    logprobs: ChatLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None
    steering: SteeringInfo | None = None


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: Literal["stop", "length"] | None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    system_fingerprint: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    steering: SteeringInfo | None = None


class DialInfo(BaseModel):
    enabled: bool
    range: tuple[float, float]
    warm: str | None
    cold: str | None
    note: str


class ModelExtras(BaseModel):
    fingerprint: str
    context_length: int
    vectors: dict[str, list[int]] = Field(description="Registered vector name -> its default layers.")
    dial: DialInfo


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "steerwarm"
    steerwarm: ModelExtras


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def dump_chunk(chunk: BaseModel) -> str:
    """One server-sent event; `usage` and `steering` appear only where set (the final chunk)."""
    data = chunk.model_dump(mode="json")
    for key in ("usage", "steering"):
        if data.get(key) is None:
            data.pop(key, None)
    for choice in data.get("choices", []):
        if isinstance(choice.get("delta"), dict):  # OpenAI sends only the delta fields that are set
            choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


def split_model(model: str) -> tuple[str, float | None]:
    """`MODEL@warmth=0.5` -> ("MODEL", 0.5); a name without suffix -> (name, None)."""
    try:
        return split_warmth_suffix(model)
    except ValueError as exc:
        raise APIError(400, f"cannot parse model {model!r}: {exc}", param="model",
                       code="invalid_model_suffix") from None
