"""Targets: what the benchmark scores, chosen by one string.

- `base`: the base model (`--model`, default smollm2-135m) in-process.
- `warmth=W`: the base model steered by the warmth dial at W (calibrated `warm.safetensors` / `cold.safetensors`
  in `--vectors`, default the repository's vectors/), every position of every prompt and answer.
- `finetune=V`: a shipped fine-tune (vectors/finetunes/V, merged on first use), in-process; V is one of
  `steerwarm.finetune.shipped.VARIANTS` (warm, cold, ...).
- `prompt=warm` / `prompt=cold` / `prompt=FILE`: the base model asked for warmth or coldness by a system prompt of
  ours (`targets/prompts/warm.txt`, `cold.txt`: the paper's warm and cold styles in our words, facts and accuracy
  kept unchanged) or by the system prompt in FILE (UTF-8 text; `warm` and `cold` name the shipped texts, write
  `./warm` for a file of that name). The instruction follows the template's default system prompt when it has one
  (`targets.prompt`: the only difference from `base` is the instruction), in both modes.
- `prompt=P@http://HOST:PORT/v1#MODEL`: an endpoint asked the same way (the system message is built with the local
  tokenizer's template, `--tokenizer`, which must be the endpoint model's).
- a path to a model folder (a fine-tune checkpoint such as `steerwarm finetune train` writes), in-process.
- `http://HOST:PORT/v1#MODEL`: any OpenAI-compatible endpoint (generate mode through chat completions,
  likelihood mode through completions with echo+logprobs, the chat prompt rendered with a local tokenizer's chat
  template, `--tokenizer`, default the base model's). `http://HOST:PORT/v1#MODEL@warmth=W`: that endpoint with
  `{"warmth": W}` in the body of every request (`steerwarm serve`, or vLLM with our plugin, steers it server-side;
  parsed by `endpoint.EndpointSpec`).

Invariants:
- A target answers a user message as a single-turn chat with no system prompt of ours (the model's template adds
  its own default), in both modes, so every target sees byte-identical conversations; a prompt target's differ
  from them only by its instruction (`targets.prompt`'s invariant).
- Warmth 0 steers nothing (the dial's own invariant), so `warmth=0` reproduces `base` bit for bit.
- `describe()` names everything that determines the target's answers (model fingerprint, dtype, vectors and
  coefficients, endpoint, its warmth and extra body, a prompt's name and text hash), and runs refuse to resume
  under a different description.
- `check_target_spec` is the one rule of which strings name a target; `parse_target` and the sweep's reference
  check both use it, so a spec that passes the check never fails to parse for its form.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from steerwarm.paths import display, shipped_vectors
from steerwarm.targets.likelihood import (
    PairScore,
    ReplyScore,
    SpecsFor,
    pair_texts,
    raw_forward_seconds,
    score_from_token_logprobs,
    score_pairs,
)
from steerwarm.targets.prompt import SystemPrompt, load_prompt, system_message, user_turn

if TYPE_CHECKING:
    from steerwarm.model.load import LoadedModel
    from steerwarm.steer.dial import Dial
    from steerwarm.steer.hooks import SteerSpec
    from steerwarm.targets.endpoint import EndpointClient



@dataclass(frozen=True)
class GenSettings:
    """Generate-mode sampling, the paper's defaults: temperature 0.8, up to 300 new tokens, one sample."""

    max_tokens: int = 300
    temperature: float = 0.8
    top_p: float = 1.0

    def record(self) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p}


class Target(ABC):
    spec: str

    @abstractmethod
    def describe(self) -> dict[str, Any]: ...

    @abstractmethod
    def generate(self, users: Sequence[str], settings: GenSettings, seed: int) -> list[str]: ...

    @abstractmethod
    def score(self, users: Sequence[str], pairs: Sequence[tuple[str, str]]) -> list[PairScore]: ...

    def raw_forward_seconds(self, users: Sequence[str]) -> float | None:
        """Seconds of a bare forward pass over these prompts (in-process targets only)."""
        return None


class LocalTarget(Target):
    """An in-process model, optionally steered by the warmth dial."""

    def __init__(self, spec: str, loaded: LoadedModel, kind: str, *, dial: Dial | None = None,
                 warmth: float = 0.0, vectors_dir: Path | None = None, prompt: SystemPrompt | None = None) -> None:
        """`prompt`: a system instruction of ours (see `targets.prompt`), placed after the template's default."""
        self.spec = spec
        self.loaded = loaded
        self.kind = kind
        self.dial = dial
        self.warmth = warmth
        self.vectors_dir = vectors_dir
        self.prompt = prompt
        self.system = system_message(loaded, prompt.text) if prompt is not None else None
        self._prefix_memo: dict[tuple[int, ...], Any] = {}  # valid: model and steering never change
        if dial is not None:
            dial.coefficients(warmth)  # validates the range now, not mid-run

    def _specs_for(self) -> SpecsFor | None:
        dial, warmth = self.dial, self.warmth
        if dial is None or warmth == 0:
            return None

        def specs(n: int) -> list[SteerSpec]:
            return dial.specs([warmth] * n)

        return specs

    def describe(self) -> dict[str, Any]:
        import torch

        dtype = next(self.loaded.model.parameters()).dtype
        out: dict[str, Any] = {"spec": self.spec, "kind": self.kind, "model": self.loaded.name,
                               "path": display(self.loaded.path), "fingerprint": self.loaded.fingerprint,
                               "dtype": str(dtype).removeprefix("torch."), "torch": torch.__version__}
        if self.dial is not None:
            warm_coef, cold_coef = self.dial.coefficients(self.warmth)
            out.update(warmth=self.warmth, vectors_dir=display(self.vectors_dir) if self.vectors_dir else None,
                       warm_coef=warm_coef,
                       cold_coef=cold_coef, warm_vector=self.dial.warm.name,
                       cold_vector=self.dial.cold.name if self.dial.cold else None,
                       warm_layers=self.dial.warm.layers)
        if self.prompt is not None:
            out.update(self.prompt.record())
        return out

    def generate(self, users: Sequence[str], settings: GenSettings, seed: int) -> list[str]:
        from steerwarm.model.chat import chat_text
        from steerwarm.steer.generate import GenerationConfig, generate_texts

        prompts = [chat_text(self.loaded, user_turn(u, self.system)) for u in users]
        cfg = GenerationConfig(max_new_tokens=settings.max_tokens, temperature=settings.temperature,
                               top_p=settings.top_p, seed=seed)
        specs_for = self._specs_for()
        specs = specs_for(len(prompts)) if specs_for is not None else []
        return generate_texts(self.loaded, prompts, specs=specs, config=cfg)

    def score(self, users: Sequence[str], pairs: Sequence[tuple[str, str]]) -> list[PairScore]:
        return score_pairs(self.loaded, users, pairs, self._specs_for(), self._prefix_memo, system=self.system)

    def raw_forward_seconds(self, users: Sequence[str]) -> float | None:
        return raw_forward_seconds(self.loaded, users)


def tokenizer_only(name_or_path: str) -> LoadedModel:
    """A LoadedModel carrying only a tokenizer (chat template and offsets for endpoint likelihood scoring)."""
    import os

    from transformers import AutoTokenizer

    from steerwarm.model.load import LoadedModel, resolve

    name, path = resolve(name_or_path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tok = AutoTokenizer.from_pretrained(str(path))
    return LoadedModel(model=cast(Any, None), tokenizer=tok, name=name, path=path, fingerprint="")


class EndpointTarget(Target):
    """Any OpenAI-compatible endpoint."""

    def __init__(self, spec: str, client: EndpointClient, tokenizer: str = "smollm2-135m",
                 tok: LoadedModel | None = None, prompt: SystemPrompt | None = None) -> None:
        """`tok`: the loaded `tokenizer` when the caller holds it already (else it is loaded on first use).
        `prompt`: a system instruction of ours, placed by the local tokenizer's template (see `targets.prompt`)."""
        self.spec = spec
        self.client = client
        self.tokenizer_name = tokenizer
        self._tok: LoadedModel | None = tok
        self.prompt = prompt
        self.system = system_message(self.tokenizer(), prompt.text) if prompt is not None else None

    def tokenizer(self) -> LoadedModel:
        """The local tokenizer (chat template and offsets), loaded on first use."""
        if self._tok is None:
            self._tok = tokenizer_only(self.tokenizer_name)
        return self._tok

    def describe(self) -> dict[str, Any]:
        out = {"spec": self.spec, "kind": "endpoint", **self.client.describe(), "tokenizer": self.tokenizer_name}
        return {**out, **self.prompt.record()} if self.prompt is not None else out

    def generate(self, users: Sequence[str], settings: GenSettings, seed: int) -> list[str]:
        # no `seed` is sent: not every OpenAI-compatible server accepts it, and sampling there is not reproducible
        def one(u: str) -> str:
            return self.client.chat(user_turn(u, self.system), temperature=settings.temperature,
                                    max_tokens=settings.max_tokens)

        return self.client.map(one, list(users))

    def score(self, users: Sequence[str], pairs: Sequence[tuple[str, str]]) -> list[PairScore]:
        tok = self.tokenizer()
        jobs: list[tuple[str, int]] = []
        for u, pair in zip(users, pairs, strict=True):
            prompt, conts, start = pair_texts(tok, u, pair, self.system)
            jobs += [(prompt + c, len(prompt) + start) for c in conts]

        def one(job: tuple[str, int]) -> ReplyScore:
            toks = self.client.prompt_logprobs(job[0])
            return score_from_token_logprobs([t.offset for t in toks], [t.logprob for t in toks], job[1])

        scores = self.client.map(one, jobs)
        return [PairScore(scores[2 * i], scores[2 * i + 1]) for i in range(len(users))]


TARGET_FORMS = ("base, warmth=W, finetune=V, prompt=warm|cold|FILE, a model folder, http://HOST:PORT/v1#MODEL "
                "or prompt=P@http://HOST:PORT/v1#MODEL")


def split_prompt_spec(spec: str) -> tuple[str, str | None]:
    """`prompt=P` -> (P, None); `prompt=P@http(s)://...` -> (P, the endpoint spec)."""
    value = spec.strip().removeprefix("prompt=")
    for scheme in ("@http://", "@https://"):
        at = value.find(scheme)
        if at >= 0:
            return value[:at], value[at + 1:]
    return value, None


def check_target_spec(spec: str, option: str = "--target") -> str:
    """The form a target string has ("endpoint", "base", "warmth", "finetune", "prompt" or "folder"), checked
    without loading a model: a bad warmth number, an unknown fine-tune, a missing or empty prompt file or an unknown
    form is a ValueError naming `option`, the spec and what is accepted."""
    from steerwarm.finetune.shipped import VARIANTS

    s = spec.strip()
    if s.startswith(("http://", "https://")):
        return "endpoint"
    if s == "base":
        return "base"
    if s.startswith("warmth="):
        try:
            float(s.split("=", 1)[1])
        except ValueError as exc:
            raise ValueError(f"{option} {spec!r}: warmth=W needs a number") from exc
        return "warmth"
    if s.startswith("finetune="):
        if s.split("=", 1)[1] not in VARIANTS:
            raise ValueError(f"{option} {spec!r}: finetune=V needs {' or '.join(VARIANTS)}")
        return "finetune"
    if s.startswith("prompt="):
        try:
            load_prompt(split_prompt_spec(s)[0])
        except ValueError as exc:
            raise ValueError(f"{option} {spec!r}: {exc}") from exc
        return "prompt"
    if Path(s).expanduser().is_dir():
        return "folder"
    raise ValueError(f"{option} {spec!r}: unknown target; use {TARGET_FORMS}")


def parse_target(spec: str, *, model: str = "smollm2-135m", dtype: str = "float32", device: str | None = None,
                 chat_template: Path | None = None, vectors_dir: Path | None = None,
                 api_key_env: str = "OPENAI_API_KEY",
                 extra_body: dict[str, Any] | None = None, concurrency: int = 4, retries: int = 5,
                 timeout: float = 120.0, tokenizer: str | None = None) -> Target:
    """Build the target a `--target` string names (see the module doc)."""
    from steerwarm.model.load import load

    spec = spec.strip()
    form = check_target_spec(spec)
    prompt: SystemPrompt | None = None
    url = spec if form == "endpoint" else None
    if form == "prompt":
        value, url = split_prompt_spec(spec)
        prompt = load_prompt(value)
    if url is not None:
        from steerwarm.targets.endpoint import EndpointClient

        client = EndpointClient(url, api_key_env=api_key_env, extra_body=extra_body, concurrency=concurrency,
                                retries=retries, timeout=timeout)
        return EndpointTarget(spec, client, tokenizer or model, prompt=prompt)
    if form in ("base", "prompt"):
        return LocalTarget(spec, load(model, dtype, device, chat_template), form, prompt=prompt)
    if form == "warmth":
        from steerwarm.steer.dial import Dial

        vdir = vectors_dir or shipped_vectors()
        dial = Dial.from_dir(vdir)
        return LocalTarget(spec, load(model, dtype, device, chat_template), "steered", dial=dial,
                           warmth=float(spec.split("=", 1)[1]), vectors_dir=vdir)
    if form == "finetune":
        from steerwarm.finetune.shipped import resolve_finetune

        return LocalTarget(spec, load(str(resolve_finetune(spec.split("=", 1)[1])), dtype, device, chat_template),
                           "finetune")
    return LocalTarget(spec, load(str(Path(spec).expanduser()), dtype, device, chat_template), "folder")
