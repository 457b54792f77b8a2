"""The warmth dial inside a real `vllm serve` (the CPU build, .venv-vllm), driven by the official openai client:
warmth 0 is vLLM without the plugin, mixed warmth in one batch equals each request alone, warmth 1 agrees with
steerwarm's own engine, and bad steering is a 400 error object while vLLM keeps serving."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

vllm = pytest.importorskip("vllm", reason="vLLM is not installed here; `make test-vllm` runs these in .venv-vllm")
pytestmark = pytest.mark.vllm

import openai  # noqa: E402

from steerwarm.model.load import LoadedModel, prepared_dir  # noqa: E402
from steerwarm.paths import shipped_vectors  # noqa: E402
from steerwarm.serve.vllm_process import VllmProcess, start_vllm  # noqa: E402

MODEL = "smollm2-135m"
PROMPTS = [
    "I failed my exam today.", "What is the capital of Australia?", "My cat died this morning.",
    "Explain why the sky is blue.", "Is it true that the Great Wall is visible from space?", "I got the job!",
    "How many legs does a spider have?", "I think vaccines cause autism, right?", "Give me a tip for sleeping better.",
    "What year did the Berlin Wall fall?", "I feel lonely since I moved to a new city.", "Who wrote Hamlet?",
    "Can you help me write a short apology to my friend?", "What is 17 times 3?", "I'm nervous about my surgery.",
    "Which planet is closest to the sun?", "My team lost the final match.", "What does DNA stand for?",
    "I think the Earth is flat. Am I right?", "Tell me something nice.",
]


# A step budget below every chat prompt's length (about 40 tokens with the template's system prompt), so each prompt
# is prefilled in chunks and steps mix prefill chunks of some requests with decode tokens of others.
STEP_TOKENS = 32


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, VllmProcess]]:
    """vLLM with the plugin (the shipped dial) and without it, started side by side, float32, chunked prefill."""
    logs = tmp_path_factory.mktemp("vllm")
    started: dict[str, VllmProcess] = {}
    errors: list[BaseException] = []

    def start(name: str, plugin: bool) -> None:
        try:
            started[name] = start_vllm(prepared_dir(), log_path=logs / f"{name}.log", served_name=MODEL,
                                       plugin=plugin, vectors=shipped_vectors() if plugin else None,
                                       args=["--max-num-batched-tokens", str(STEP_TOKENS), "--max-num-seqs", "16"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(n, p)) for n, p in (("plugin", True), ("plain", False))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        if errors:
            raise errors[0]
        yield started
    finally:
        for s in started.values():
            s.stop()


def _client(server: VllmProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)


def _complete(server: VllmProcess, prompt: str | list[int], max_tokens: int = 24, logprobs: int | None = None,
              **extra: Any) -> Any:
    return _client(server).completions.create(
        model=MODEL, prompt=prompt, max_tokens=max_tokens, temperature=0, logprobs=logprobs,
        extra_body={"return_tokens_as_token_ids": True, **extra}).choices[0]


def _chat(server: VllmProcess, prompt: str, max_tokens: int = 24, **extra: Any) -> str:
    out = _client(server).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt}],
                                                  max_tokens=max_tokens, temperature=0, extra_body=extra)
    return str(out.choices[0].message.content)


def _token_ids(choice: Any) -> list[int]:
    return [int(t.split(":")[1]) for t in choice.logprobs.tokens]


def test_warmth_zero_is_token_identical_to_vllm_without_the_plugin(servers: dict[str, VllmProcess]) -> None:
    plugin, plain = servers["plugin"], servers["plain"]
    for prompt in PROMPTS[:6]:
        base = _token_ids(_complete(plain, prompt, logprobs=1))
        assert _token_ids(_complete(plugin, prompt, logprobs=1)) == base
        assert _token_ids(_complete(plugin, prompt, logprobs=1, warmth=0)) == base
        assert _chat(plugin, prompt, warmth=0) == _chat(plain, prompt)
    # and the dial does act through the same server
    assert _chat(plugin, PROMPTS[0], warmth=1) != _chat(plain, PROMPTS[0])


def test_mixed_warmth_in_one_batch_equals_each_request_alone(servers: dict[str, VllmProcess]) -> None:
    plugin = servers["plugin"]
    cases = [(p, w) for p in PROMPTS[:2] for w in (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5)]
    with ThreadPoolExecutor(len(cases)) as pool:
        together = list(pool.map(lambda c: _token_ids(_complete(plugin, c[0], logprobs=1, warmth=c[1])), cases))
    alone = [_token_ids(_complete(plugin, p, logprobs=1, warmth=w)) for p, w in cases]
    assert together == alone
    assert len({tuple(t) for t in together[:6]}) > 2  # the warmth values really differ in effect


def test_streaming_and_vllm_xargs_carry_the_same_steering(servers: dict[str, VllmProcess]) -> None:
    plugin = servers["plugin"]
    whole = _chat(plugin, PROMPTS[2], warmth=1)
    stream = _client(plugin).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": PROMPTS[2]}], max_tokens=24, temperature=0, stream=True,
        extra_body={"warmth": 1})
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == whole
    assert _chat(plugin, PROMPTS[2], vllm_xargs={"warmth": 1}) == whole
    raw = json.dumps({"vector": "warm", "coef": 0.1043, "layers": [15]})
    assert _chat(plugin, PROMPTS[2], vllm_xargs={"steering": raw}) == _chat(
        plugin, PROMPTS[2], steering={"vector": "warm", "coef": 0.1043, "layers": [15]})


@pytest.fixture(scope="module")
def steerwarm_engine() -> Iterator[tuple[LoadedModel, Any, Any]]:
    from steerwarm.model.load import load
    from steerwarm.serve.engine import Engine
    from steerwarm.serve.registry import SteeringRegistry

    loaded = load(MODEL)
    registry = SteeringRegistry.from_dir(shipped_vectors(), loaded)
    engine = Engine(loaded, registry, max_batch=8)
    try:
        yield loaded, registry, engine
    finally:
        engine.close()


def test_warmth_one_agrees_with_steerwarms_own_engine(servers: dict[str, VllmProcess],
                                                      steerwarm_engine: tuple[LoadedModel, Any, Any],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from steerwarm.model.chat import chat_text
    from steerwarm.serve.engine import ChoiceDone, EngineRequest, Event, SamplingParams

    loaded, registry, engine = steerwarm_engine
    agree, worst = 0, 0.0
    for prompt in PROMPTS:
        ids = loaded.tokenizer(chat_text(loaded, [{"role": "user", "content": prompt}]),
                               add_special_tokens=False)["input_ids"]
        events: list[Event] = []
        engine.submit([EngineRequest(tuple(ids), SamplingParams(max_tokens=16, temperature=0.0, logprobs=5),
                                     registry.resolve(1.0, []))], [events.append])
        engine.run_until_idle()
        done = next(e for e in events if isinstance(e, ChoiceDone))
        assert done.logprobs is not None
        ours = [t.token_id for t in done.logprobs]
        theirs = _complete(servers["plugin"], list(ids), max_tokens=16, logprobs=5, warmth=1, ignore_eos=False)
        assert len(ids) > STEP_TOKENS  # prefilled in chunks
        agree += _token_ids(theirs)[:16] == ours[:16]
        first_ours = {t.token_id: t.logprob for t in done.logprobs[0].top}
        first_theirs = {int(k.split(":")[1]): v for k, v in theirs.logprobs.top_logprobs[0].items()}
        shared = set(first_ours) & set(first_theirs)
        assert shared, prompt
        worst = max(worst, *(abs(first_ours[t] - first_theirs[t]) for t in shared))
    with capsys.disabled():
        print(f"\nvLLM plugin vs steerwarm engine at warmth 1: {agree}/{len(PROMPTS)} prompts with the same first "
              f"16 greedy tokens; largest first-token logprob difference {worst:.2e}")
    assert agree >= 18
    assert worst < 0.05


@pytest.mark.parametrize(("extra", "param"), [
    ({"steering": {"vector": "no-such-vector", "coef": 0.1}}, "steering.vector"),
    ({"warmth": 5}, "warmth"),
    ({"warmth": "warm"}, "warmth"),
    ({"vllm_xargs": {"steering": "{oops"}}, "steering"),
    ({"steering": {"vector": "warm", "coef": 0.1, "layers": [99]}}, "steering.layers"),
])
def test_bad_steering_is_a_400_error_object_and_vllm_keeps_serving(servers: dict[str, VllmProcess],
                                                                   extra: dict[str, Any], param: str) -> None:
    plugin = servers["plugin"]
    with pytest.raises(openai.BadRequestError) as info:
        _chat(plugin, "hello", max_tokens=4, **extra)
    assert info.value.status_code == 400
    body = info.value.body
    assert isinstance(body, dict) and param in str(body.get("param") or body.get("message"))
    with pytest.raises(openai.BadRequestError):  # completions and streaming validate before anything is sent
        _client(plugin).completions.create(model=MODEL, prompt="hello", max_tokens=4, stream=True, extra_body=extra)
    assert _chat(plugin, PROMPTS[1], max_tokens=8, warmth=0.5)  # still serving


def test_vllm_without_the_plugin_drops_the_warmth_field(servers: dict[str, VllmProcess]) -> None:
    """Without the plugin vLLM ignores unknown body fields: why a fleet must load it (shown, not assumed)."""
    plain = servers["plain"]
    assert _chat(plain, PROMPTS[0], warmth=1) == _chat(plain, PROMPTS[0])


def test_a_sweep_runs_the_study_through_the_plugin(servers: dict[str, VllmProcess], tmp_path: Path) -> None:
    """`steerwarm sweep run --endpoint` against vLLM: each dial point is the request's warmth, and the likelihood
    scores agree with steerwarm's own steered model (float32; the kernels differ, so within 2e-3 per token)."""
    from typer.testing import CliRunner

    from steerwarm.bench.runner import RunConfig, run_benchmark
    from steerwarm.cli.app import app
    from steerwarm.model.load import load
    from steerwarm.steer.dial import Dial
    from steerwarm.targets.registry import LocalTarget
    from tests.bench_fixtures import write_items

    items = write_items(tmp_path / "items")
    out = tmp_path / "sweep"
    argv = ["sweep", "run", "--endpoint", f"{servers['plugin'].base_url}#{MODEL}", "--warmth", "0,1", "--out",
            str(out), "--tasks", "trivia", "--items", f"trivia={items['trivia']}", "--limit", "2", "--per-item", "1",
            "--meter-prompts", "2", "--meter-tokens", "8", "--batch-size", "4", "--concurrency", "2", "--no-progress"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    loaded = load(MODEL)
    dial = Dial.from_dir(shipped_vectors())
    for label, slug, warmth in [("base", "warmth+0.00", 0.0), ("warm", "warmth+1.00", 1.0)]:
        target = LocalTarget(label, loaded, "steered", dial=dial, warmth=warmth)
        cfg = RunConfig(tasks=["trivia"], out=tmp_path / label, items={"trivia": items["trivia"]}, limit=2,
                        per_item=1, batch_size=4, yardstick_every=0)
        run_benchmark(cfg, target, progress=False)
        local, served = (_rows(tmp_path / label), _rows(out / "runs" / slug))
        assert sorted(local) == sorted(served) and len(local) == 2
        for pid, row in local.items():
            for key in ("lp_correct", "lp_wrong"):
                assert served[pid][key] == pytest.approx(row[key], abs=2e-3), (label, pid, key)


def _rows(run_dir: Path) -> dict[str, dict[str, Any]]:
    lines = (run_dir / "results.jsonl").read_text().splitlines()
    return {r["prompt_id"]: r for r in (json.loads(x) for x in lines if x.strip())}
