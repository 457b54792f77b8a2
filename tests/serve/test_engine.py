"""The batching engine on the tiny random model: batched rows equal their solo runs (joining mid-generation
included), warmth 0 is the plain model, seeds are per row, stops, cancellation, limits and failures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch

from steerwarm.model.load import LoadedModel
from steerwarm.serve.engine import (
    ChoiceDone,
    Delta,
    Engine,
    EngineRequest,
    Event,
    Failed,
    PromptReady,
    QueueFullError,
    SamplingParams,
)
from steerwarm.serve.registry import RowSteering, SteeringRegistry
from steerwarm.steer.dial import Dial
from steerwarm.steer.generate import GenerationConfig, generate_texts
from steerwarm.steer.hooks import SteerSpec, active_hooks, record_residuals, steer
from steerwarm.steer.vector import Calibration
from tests.conftest import random_vector

PROMPTS = ["i feel sad today", "what is the answer to this question ?", "make me a cup of tea please", "hello",
           "you are kind and warm , thanks"]


def _registry(tiny: LoadedModel, dial: bool = True) -> SteeringRegistry:
    warm, cold = random_vector(tiny, [1], seed=1, name="warm"), random_vector(tiny, [1], seed=2, name="cold")
    warm.calibration = Calibration(dial=[0.0, 1.0], coef=[0.0, 2.0])
    cold.calibration = Calibration(dial=[0.0, 1.0], coef=[0.0, 2.0])
    raw = random_vector(tiny, [0, 2], seed=3, name="raw")
    vectors = {"warm": warm, "cold": cold, "raw": raw} if dial else {"raw": raw}
    return SteeringRegistry(vectors, Dial(warm, cold) if dial else None, dial_note="test",
                            num_layers=tiny.num_layers)


def _ids(tiny: LoadedModel, text: str) -> tuple[int, ...]:
    return tuple(tiny.tokenizer(text, add_special_tokens=False)["input_ids"])


def _req(tiny: LoadedModel, reg: SteeringRegistry, prompt: str, warmth: float = 0.0, *, max_tokens: int = 16,
         raw: Sequence[tuple[str, list[int] | None, float]] = (), **kw: object) -> EngineRequest:
    params = {"max_tokens": max_tokens, "temperature": 0.0, "logprobs": 2}
    params.update({k: v for k, v in kw.items() if k in ("temperature", "top_p", "seed", "stop", "logprobs")})
    rest = {k: v for k, v in kw.items() if k in ("n", "stream", "echo", "prompt_logprobs")}
    return EngineRequest(_ids(tiny, prompt), SamplingParams(**params), reg.resolve(warmth, list(raw)),
                         **rest)


def _run(engine: Engine, reqs: Sequence[EngineRequest], join_at: Sequence[int] | None = None,
         before_step: Callable[[int], None] | None = None) -> list[list[Event]]:
    """Submit request i before step join_at[i]; step until idle (calling `before_step(step)` first). Returns each
    request's events."""
    join_at = join_at or [0] * len(reqs)
    events: list[list[Event]] = [[] for _ in reqs]
    order = sorted(range(len(reqs)), key=lambda i: join_at[i])
    step = 0
    while order or engine.running_rows or engine.queue_depth:
        if before_step is not None:
            before_step(step)
        while order and join_at[order[0]] <= step:
            i = order.pop(0)
            engine.submit([reqs[i]], [events[i].append])
        engine.step()
        step += 1
        assert step < 10_000
    return events


def _solo(engine: Engine, req: EngineRequest) -> list[ChoiceDone]:
    return _done(_run(engine, [req])[0])


def _done(events: list[Event]) -> list[ChoiceDone]:
    return sorted((e for e in events if isinstance(e, ChoiceDone)), key=lambda d: d.choice)


def _tokens(d: ChoiceDone) -> list[int]:
    assert d.logprobs is not None
    return [t.token_id for t in d.logprobs]


def test_rows_joining_mid_generation_equal_their_solo_runs(family: LoadedModel) -> None:
    """Mixed warmth (and a raw vector) in one batch, rows joining mid-generation: each row equals its solo run, in
    every family of the architecture matrix (Gemma 3's hybrid sliding/full attention included)."""
    tiny = family
    reg = _registry(tiny)
    engine = Engine(tiny, reg, max_batch=8)
    reqs = [_req(tiny, reg, PROMPTS[0], 0.0), _req(tiny, reg, PROMPTS[1], 1.0), _req(tiny, reg, PROMPTS[2], -1.0),
            _req(tiny, reg, PROMPTS[3], 0.5, raw=[("raw", None, 0.7)]), _req(tiny, reg, PROMPTS[4], 0.0, max_tokens=5)]
    alone = [_solo(engine, r)[0] for r in reqs]
    together = [_done(ev)[0] for ev in _run(engine, reqs, join_at=[0, 0, 3, 6, 9])]
    for a, b in zip(alone, together, strict=True):
        assert _tokens(a) == _tokens(b)
        assert (a.text, a.finish_reason, a.completion_tokens) == (b.text, b.finish_reason, b.completion_tokens)
        assert a.logprobs is not None and b.logprobs is not None
        for x, y in zip(a.logprobs, b.logprobs, strict=True):
            assert x.logprob == pytest.approx(y.logprob, abs=1e-4)
        assert a.projection_sum / a.projection_count == pytest.approx(b.projection_sum / b.projection_count, abs=1e-4)
    # the steered rows really differ from the unsteered model, so the equality above is not vacuous
    base = [_solo(engine, _req(tiny, reg, PROMPTS[i], 0.0))[0] for i in (1, 2)]
    assert _tokens(base[0]) != _tokens(alone[1]) or base[0].logprobs != alone[1].logprobs
    assert _tokens(base[1]) != _tokens(alone[2]) or base[1].logprobs != alone[2].logprobs
    assert engine.running_rows == 0


def test_warmth_zero_is_the_plain_model_and_matches_generate(tiny: LoadedModel) -> None:
    dialed = Engine(tiny, _registry(tiny))
    plain_reg = _registry(tiny, dial=False)
    outs = [_done(ev)[0] for ev in _run(dialed, [_req(tiny, dialed.registry, p, 0.0, max_tokens=12) for p in PROMPTS])]
    dialed.close()
    plain = Engine(tiny, plain_reg)
    ref = [_solo(plain, _req(tiny, plain_reg, p, 0.0, max_tokens=12))[0] for p in PROMPTS]
    plain.close()
    together = [_done(ev)[0] for ev in _run(Engine(tiny, plain_reg), [_req(tiny, plain_reg, p, max_tokens=12)
                                                                       for p in PROMPTS])]
    for d, r, t in zip(outs, ref, together, strict=True):
        assert d.logprobs == t.logprobs  # same batch, bit-identical: warmth 0 adds nothing
        assert _tokens(t) == _tokens(r)
    for p, r in zip(PROMPTS, ref, strict=True):
        want = generate_texts(tiny, [p], config=GenerationConfig(max_new_tokens=12))[0]
        assert r.text == want


def test_warmth_projection_is_the_mean_pre_steering_projection(tiny: LoadedModel) -> None:
    reg = _registry(tiny)
    engine = Engine(tiny, reg)
    assert reg.monitor is not None and reg.dial is not None
    for warmth in (0.0, 1.0):
        done = _solo(engine, _req(tiny, reg, PROMPTS[1], warmth, max_tokens=8))[0]
        prompt = list(_ids(tiny, PROMPTS[1]))
        seq = torch.tensor([prompt + _tokens(done)[:-1]])
        layer = reg.monitor.layer
        specs = reg.dial.specs([warmth])
        engine.close()  # the engine's own hooks off, for a clean reference forward
        with torch.no_grad(), record_residuals(tiny.model, [layer]) as rec, steer(tiny.model, specs):
            tiny.model(input_ids=seq)
        h = rec[layer][0][0, len(prompt) - 1:]
        want = float(((h @ reg.monitor.direction) / reg.monitor.norm).mean())
        assert done.projection_count == 8
        assert done.projection_sum / done.projection_count == pytest.approx(want, abs=1e-5)
        engine = Engine(tiny, reg)


def test_seeded_sampling_does_not_depend_on_the_batch(tiny: LoadedModel) -> None:
    reg = _registry(tiny)
    engine = Engine(tiny, reg)
    sampled = _req(tiny, reg, PROMPTS[1], 0.5, temperature=1.3, top_p=0.95, seed=11, max_tokens=20)
    alone = _solo(engine, sampled)[0]
    again = _solo(engine, sampled)[0]
    busy = _run(engine, [_req(tiny, reg, PROMPTS[0], 1.0, temperature=1.0, seed=3, max_tokens=20), sampled,
                         _req(tiny, reg, PROMPTS[2], 0.0, max_tokens=20)], join_at=[0, 2, 1])
    assert _tokens(alone) == _tokens(again) == _tokens(_done(busy[1])[0])
    other = _solo(engine, _req(tiny, reg, PROMPTS[1], 0.5, temperature=1.3, top_p=0.95, seed=12,
                                     max_tokens=20))[0]
    assert _tokens(other) != _tokens(alone)
    # n choices: choice c draws with seed + c
    multi = _solo(engine, _req(tiny, reg, PROMPTS[1], 0.5, temperature=1.3, top_p=0.95, seed=11,
                                     max_tokens=20, n=2))
    assert [_tokens(d) for d in multi] == [_tokens(alone), _tokens(other)]


def test_stop_sequences_cut_text_and_stream_deltas_add_up(tiny: LoadedModel) -> None:
    reg = _registry(tiny)
    engine = Engine(tiny, reg)
    full = _solo(engine, _req(tiny, reg, PROMPTS[3], 1.0, max_tokens=16, temperature=1.0, seed=5))[0]
    words = full.text.split()
    assert len(words) > 4, full.text
    stop = words[3]
    events = _run(engine, [_req(tiny, reg, PROMPTS[3], 1.0, max_tokens=16, temperature=1.0, seed=5, stop=(stop,),
                                stream=True)])[0]
    done = _done(events)[0]
    assert done.finish_reason == "stop"
    assert done.text == full.text[:full.text.index(stop)]
    streamed = "".join(e.text for e in events if isinstance(e, Delta)) + done.tail
    assert streamed == done.text
    assert stop not in streamed
    assert isinstance(events[0], PromptReady)
    length = _solo(engine, _req(tiny, reg, PROMPTS[3], 1.0, max_tokens=7, temperature=1.0, seed=5))[0]
    assert (length.finish_reason, length.completion_tokens) == ("length", 7)


def test_prompt_logprobs_equal_a_steered_forward(tiny: LoadedModel) -> None:
    reg = _registry(tiny)
    engine = Engine(tiny, reg)
    ids = _ids(tiny, PROMPTS[1])
    events = _run(engine, [_req(tiny, reg, PROMPTS[1], 1.0, max_tokens=0, echo=True, prompt_logprobs=3)])[0]
    ready = next(e for e in events if isinstance(e, PromptReady))
    assert ready.text == tiny.tokenizer.decode(list(ids)) and ready.logprobs is not None
    assert _done(events)[0].finish_reason == "length" and _done(events)[0].completion_tokens == 0
    assert reg.dial is not None
    engine.close()
    with torch.no_grad(), steer(tiny.model, reg.dial.specs([1.0])):
        lp = torch.log_softmax(tiny.model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    assert ready.logprobs[0].logprob is None
    for i in range(1, len(ids)):
        info = ready.logprobs[i]
        assert info.token_id == ids[i]
        assert info.logprob == pytest.approx(float(lp[i - 1, ids[i]]), abs=1e-5)
        assert [t.token_id for t in info.top] == lp[i - 1].topk(3).indices.tolist()
        assert ready.text[info.offset:].lstrip().startswith(info.token)


def test_cancelled_rows_are_freed_and_queue_is_bounded(tiny: LoadedModel) -> None:
    reg = _registry(tiny)
    engine = Engine(tiny, reg, max_batch=1, max_queue=1)
    got: list[list[Event]] = [[], [], []]
    long = _req(tiny, reg, PROMPTS[1], 0.0, max_tokens=200, logprobs=None)
    h0 = engine.submit([long], [got[0].append])[0]  # fits in the free row: not queued
    assert engine.queue_depth == 0
    h1 = engine.submit([long], [got[1].append])[0]  # waits for a row: the one queued request allowed
    assert engine.queue_depth == 1
    with pytest.raises(QueueFullError, match="queue is full"):
        engine.submit([long], [got[2].append])
    engine.step()
    assert (engine.running_rows, engine.queue_depth) == (1, 1)
    with pytest.raises(QueueFullError):
        engine.submit([long], [got[2].append])
    h0.cancel()
    seen = len(got[0])
    engine.step()
    assert (engine.running_rows, engine.queue_depth) == (1, 0)  # the cancelled row made room for the waiting one
    assert len(got[0]) == seen and got[1]
    h1.cancel()
    engine.step()
    assert engine.running_rows == 0 and not got[2]
    with pytest.raises(ValueError, match="context length"):
        engine.submit([_req(tiny, reg, PROMPTS[1], max_tokens=300)], [got[2].append])


def test_a_failing_step_fails_its_requests_and_the_engine_keeps_serving(tiny: LoadedModel,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    reg = _registry(tiny)
    engine = Engine(tiny, reg)
    decoder = tiny.model.get_decoder()  # the engine runs the decoder, then the head itself
    real_forward = decoder.forward
    calls = {"n": 0}

    def flaky(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(decoder, "forward", flaky)
    events = _run(engine, [_req(tiny, reg, PROMPTS[0], 1.0, max_tokens=10)])[0]
    assert isinstance(events[-1], Failed) and "boom" in events[-1].message
    monkeypatch.setattr(decoder, "forward", real_forward)
    assert _solo(engine, _req(tiny, reg, PROMPTS[0], 1.0, max_tokens=4))[0].completion_tokens == 4


@pytest.mark.parametrize("phase", ["sampling", "steering", "decoding and stop handling"])
def test_a_fault_in_one_rows_request_fails_it_alone(tiny: LoadedModel, monkeypatch: pytest.MonkeyPatch,
                                                    phase: str) -> None:
    """A fault injected mid-generation into the rows of one request (n=2) among four: that request gets one Failed
    naming the phase, the other rows equal their solo runs, and the engine goes on serving."""
    import steerwarm.serve.engine as engine_mod

    reg = _registry(tiny)
    engine = Engine(tiny, reg, max_batch=8)
    poison = 0.7  # the poisoned request: sampled at this temperature, steered at this warmth, or with this stop
    reqs = [_req(tiny, reg, PROMPTS[0], 0.0, max_tokens=10), _req(tiny, reg, PROMPTS[1], 1.0, max_tokens=10),
            _req(tiny, reg, PROMPTS[2], -1.0, max_tokens=10), _req(tiny, reg, PROMPTS[4], 0.5, max_tokens=6)]
    stop = {"stop": ("zz",)} if phase.startswith("decoding") else {}
    bad = _req(tiny, reg, PROMPTS[3], poison if phase == "steering" else 0.0, max_tokens=10, n=2, seed=1,
               temperature=poison if phase == "sampling" else 0.0, **stop)
    alone = [_solo(engine, r) for r in reqs]
    armed = {"on": False}
    if phase == "sampling":
        real_sample = engine_mod._sample

        def sample(logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator | None) -> int:
            if armed["on"] and temperature == poison:
                raise RuntimeError("injected sampling fault")
            return real_sample(logits, temperature, top_p, gen)
        monkeypatch.setattr(engine_mod, "_sample", sample)
    elif phase == "steering":
        real_specs = reg.specs

        def specs(rows: Sequence[RowSteering]) -> object:
            if armed["on"] and any(r.warmth == poison for r in rows):
                raise KeyError("injected steering fault")
            return real_specs(rows)
        monkeypatch.setattr(reg, "specs", specs)
    else:
        real_append = Engine._append

        def append(row: Any, text: str) -> bool:
            if armed["on"] and row.params.stop == ("zz",):
                raise UnicodeError("injected stop-handling fault")
            return real_append(row, text)
        monkeypatch.setattr(Engine, "_append", staticmethod(append))

    def arm(step: int) -> None:
        armed["on"] = step >= 3  # after the poisoned rows have generated a few tokens

    # the last good request joins after the fault is armed, so the steering of the batch changes then
    events = _run(engine, [*reqs[:3], bad, reqs[3]], join_at=[0, 0, 0, 0, 4], before_step=arm)
    bad_events = events.pop(3)
    failed = [e for e in bad_events if isinstance(e, Failed)]
    assert len(failed) == 1 and bad_events[-1] is failed[0], bad_events
    assert f"({phase})" in failed[0].message and "injected" in failed[0].message
    assert not any(isinstance(e, ChoiceDone) for e in bad_events)
    assert any(isinstance(e, PromptReady) for e in bad_events)  # it was admitted and running when it failed
    for solo, ev in zip(alone, events, strict=True):
        got = _done(ev)
        assert not any(isinstance(e, Failed) for e in ev)
        assert [(_tokens(d), d.text, d.finish_reason) for d in got] == [(_tokens(d), d.text, d.finish_reason)
                                                                         for d in solo]
    assert engine.row_failures == 1 and engine.running_rows == 0
    # a poisoned request arriving while the fault is armed fails alone in its prefill step
    late = _run(engine, [bad, reqs[0]], before_step=lambda _: armed.update(on=True))
    assert isinstance(late[0][-1], Failed) and f"({phase})" in late[0][-1].message
    assert not any(isinstance(e, ChoiceDone) for e in late[0])
    assert [_tokens(d) for d in _done(late[1])] == [_tokens(d) for d in alone[0]]
    monkeypatch.undo()
    assert _solo(engine, _req(tiny, reg, PROMPTS[0], 1.0, max_tokens=4))[0].completion_tokens == 4


def test_engine_hooks_are_removed_on_close(tiny: LoadedModel) -> None:
    reg = _registry(tiny)
    engine = Engine(tiny, reg)
    _run(engine, [_req(tiny, reg, PROMPTS[0], 1.0, max_tokens=3, raw=[("raw", [0], 0.2)])])
    assert active_hooks(tiny.model) > 0
    engine.stop()
    assert active_hooks(tiny.model) == 0


def test_row_steering_specs_reuse_keys(tiny: LoadedModel) -> None:
    reg = _registry(tiny)
    rows = [RowSteering(0.0), reg.resolve(1.0, [("raw", [0], 0.5)]), reg.resolve(-1.0, [])]
    keys, specs = reg.specs(rows)
    assert keys == (("warm", (1,)), ("cold", (1,)), ("raw", (0,)))
    assert [list(map(float, s.coefs)) for s in specs] == [[0.0, 2.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.5, 0.0]]
    assert reg.specs(rows[:1] + rows[2:])[0] == (("warm", (1,)), ("cold", (1,)))
    assert isinstance(specs[0], SteerSpec)
