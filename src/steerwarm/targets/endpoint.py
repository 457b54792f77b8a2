"""An OpenAI-compatible endpoint, through the official `openai` client: chat answers, prompt-token log-probabilities,
concurrency and retries with backoff. Used by endpoint targets and by the LLM judge.

Spec: `http://HOST:PORT/v1#MODEL` (the part after `#` is the model name; without it the endpoint's first listed
model is used), optionally `http://HOST:PORT/v1#MODEL@warmth=W`: the endpoint with `{"warmth": W}` in the JSON body
of every request (chat and completions), which `steerwarm serve` and vLLM with our plugin both read. The API key is
read from the environment variable named by `api_key_env` (default OPENAI_API_KEY); local servers that ignore keys
get a placeholder. `extra_body` (e.g. `{"top_k": 20}`) is sent with every request.

Invariants:
- The `@warmth=W` suffix is parsed by `EndpointSpec.parse` with the server's own parser
  (`steer.dial.split_warmth_suffix`): W must be a finite number, else a ValueError naming the spec; the suffix
  never reaches the server in the model name (the body carries the warmth, never both), and an `extra_body` that
  also sets "warmth" next to a suffix is refused (two sources of one value).
- `describe()` records the warmth, so a run folder refuses to resume under another value.
- A call is retried only on transient failures (connection errors, timeouts, HTTP 408/409/429/5xx), at most
  `retries` times, sleeping `backoff * 2**attempt` seconds (x0.75-1.25 jitter, capped at 60 s, or the server's
  Retry-After when it sends one); any other error is raised at once with the endpoint named.
- `map` runs at most `concurrency` calls at a time and returns results in input order.
- Prompt log-probabilities use /v1/completions with `echo=true, logprobs=1, max_tokens=0`; an endpoint that does
  not support it raises `LikelihoodUnsupportedError` saying so, never a silently wrong score.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from steerwarm.steer.dial import split_warmth_suffix

T = TypeVar("T")
R = TypeVar("R")
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class EndpointError(RuntimeError):
    """A request to an OpenAI-compatible endpoint failed for good."""


class LikelihoodUnsupportedError(EndpointError):
    """The endpoint cannot return prompt-token log-probabilities."""


@dataclass(frozen=True)
class EndpointSpec:
    """An endpoint: its base URL, the model name sent (None: the first listed) and the warmth sent in the body."""

    base_url: str
    model: str | None
    warmth: float | None = None

    @classmethod
    def parse(cls, spec: str) -> EndpointSpec:
        if not spec.startswith(("http://", "https://")):
            raise ValueError(f"an endpoint spec looks like http://HOST:PORT/v1#MODEL, got {spec!r}")
        url, _, model = spec.strip().partition("#")
        try:
            model, warmth = split_warmth_suffix(model, require_name=False)
        except ValueError as exc:
            raise ValueError(f"endpoint spec {spec!r}: {exc}") from None
        return cls(url.rstrip("/"), model or None, warmth)


def request_body(spec: EndpointSpec, extra_body: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON body fields sent with every request: `extra_body` plus the spec's warmth (refusing both at once)."""
    body = dict(extra_body or {})
    if spec.warmth is not None:
        if "warmth" in body:
            raise ValueError(f"the warmth is given twice: @warmth={spec.warmth!r} in the endpoint spec and "
                             f"\"warmth\": {body['warmth']!r} in --extra-body; keep one (the spec's suffix)")
        body["warmth"] = spec.warmth
    return body


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float | None
    offset: int


def _status(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    return int(code) if isinstance(code, int) else None


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        value = headers.get("retry-after")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class EndpointClient:
    def __init__(self, spec: str | EndpointSpec, *, api_key_env: str = "OPENAI_API_KEY",
                 extra_body: dict[str, Any] | None = None, concurrency: int = 4, retries: int = 5,
                 backoff: float = 1.0, timeout: float = 120.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        from openai import OpenAI

        self.spec = EndpointSpec.parse(spec) if isinstance(spec, str) else spec
        if concurrency < 1 or retries < 0:
            raise ValueError("concurrency must be >= 1 and retries >= 0")
        self.extra_body = request_body(self.spec, extra_body)
        self.concurrency = concurrency
        self.retries = retries
        self.backoff = backoff
        self.sleep = sleep
        self.api_key_env = api_key_env
        key = os.environ.get(api_key_env) or "sk-no-key-needed"
        self.client = OpenAI(base_url=self.spec.base_url, api_key=key, max_retries=0, timeout=timeout)
        self._model = self.spec.model
        self.retried = 0

    @property
    def model(self) -> str:
        if self._model is None:
            listed = self.call(lambda: self.client.models.list())
            ids = [m.id for m in listed.data]
            if not ids:
                raise EndpointError(f"{self.spec.base_url} lists no models; name one as {self.spec.base_url}#MODEL")
            self._model = ids[0]
        return self._model

    def describe(self) -> dict[str, Any]:
        return {"base_url": self.spec.base_url, "model": self._model or self.spec.model,
                "warmth": self.spec.warmth, "extra_body": self.extra_body, "api_key_env": self.api_key_env}

    def _transient(self, exc: BaseException) -> bool:
        import openai

        if isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError)):
            return True
        status = _status(exc)
        return status is not None and status in RETRY_STATUS

    def call(self, fn: Callable[[], T]) -> T:
        """Run one request with the retry policy of the module doc."""
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as exc:
                if not self._transient(exc) or attempt >= self.retries:
                    raise EndpointError(f"{self.spec.base_url}: {type(exc).__name__}: {exc}") from exc
                wait = _retry_after(exc)
                if wait is None:
                    wait = self.backoff * (2 ** attempt) * random.uniform(0.75, 1.25)
                self.retried += 1
                self.sleep(min(60.0, max(0.0, wait)))
                attempt += 1

    def map(self, fn: Callable[[R], T], inputs: Sequence[R]) -> list[T]:
        if self.concurrency == 1 or len(inputs) <= 1:
            return [fn(x) for x in inputs]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(fn, inputs))

    def chat(self, messages: Sequence[dict[str, str]], *, temperature: float, max_tokens: int,
             seed: int | None = None) -> str:
        model = self.model
        kwargs: dict[str, Any] = {"model": model, "messages": list(messages), "temperature": temperature,
                                  "max_tokens": max_tokens, "extra_body": self.extra_body or None}
        if seed is not None:
            kwargs["seed"] = seed
        resp = self.call(lambda: self.client.chat.completions.create(**kwargs))
        if not resp.choices:
            raise EndpointError(f"{self.spec.base_url}: chat completion without choices")
        return str(resp.choices[0].message.content or "")

    def prompt_logprobs(self, text: str) -> list[TokenLogprob]:
        """Log-probability of every token of `text` given the tokens before it (the first has none)."""
        import openai

        model = self.model

        def request() -> Any:
            return self.client.completions.create(model=model, prompt=text, echo=True, logprobs=1, max_tokens=0,
                                                  temperature=0.0, extra_body=self.extra_body or None)

        hint = (f"{self.spec.base_url} ({model}) cannot return prompt-token log-probabilities through "
                "/v1/completions with echo=true, logprobs=1, max_tokens=0; use --mode generate, or an endpoint "
                "that supports it (steerwarm serve, vLLM)")
        try:
            resp = self.call(request)
        except EndpointError as exc:
            cause = exc.__cause__
            if isinstance(cause, (openai.BadRequestError, openai.NotFoundError, openai.UnprocessableEntityError)):
                raise LikelihoodUnsupportedError(f"{hint}: {cause}") from exc
            raise
        lp = resp.choices[0].logprobs if resp.choices else None
        tokens = getattr(lp, "tokens", None)
        values = getattr(lp, "token_logprobs", None)
        if lp is None or not tokens or values is None or len(values) != len(tokens):
            raise LikelihoodUnsupportedError(f"{hint}: the response carries no prompt logprobs")
        offsets = getattr(lp, "text_offset", None)
        if not offsets or len(offsets) != len(tokens):
            offsets, pos = [], 0
            for t in tokens:
                offsets.append(pos)
                pos += len(t)
        return [TokenLogprob(str(t), None if v is None else float(v), int(o))
                for t, v, o in zip(tokens, values, offsets, strict=True)]
