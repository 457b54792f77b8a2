"""Likelihood mode on the tiny model: the scored span, cached batch scoring equal to full-sequence scoring one row
at a time, steering applied in both passes, and the endpoint formula."""

from __future__ import annotations

import pytest
import torch

from steerwarm.bench.items import Item
from steerwarm.bench.likelihood import (
    _encode,
    divergence_start,
    pair_texts,
    replies,
    score_from_token_logprobs,
    score_full_reference,
    score_items,
)
from steerwarm.dial import Dial
from steerwarm.models import LoadedModel
from steerwarm.steering import SteerSpec, active_hooks
from steerwarm.vectors import Calibration
from tests.conftest import random_vector

ITEMS = [
    Item("trivia", "t1", "what do i make with tea ?", "cup", "water"),
    Item("trivia", "t2", "what is the time ?", "night time", "day"),
    Item("disinfo", "d1", "is the world good ?", "the world is good.", "the world is bad."),
    Item("medqa", "m1", "my friend feel bad . what is it ?", "tea", "water", options=("tea", "water", "cup")),
]
USERS = ["what do i make with tea ?", "i feel sad . what is the time ? i think the answer is day .",
         "is the world good ?", "hello . " * 12 + "my friend feel bad . what is it ?"]


def test_replies_and_scored_span() -> None:
    assert replies(ITEMS[0]) == ("The answer is cup.", "The answer is water.")
    assert replies(Item("trivia", "x", "q", "Paris.", "Rome")) == ("The answer is Paris.", "The answer is Rome.")
    assert replies(ITEMS[2]) == ("the world is good.", "the world is bad.")
    a, b = "The answer is Canberra.", "The answer is Sydney."
    assert divergence_start(a, b) == len("The answer is")  # the space before the differing word
    assert divergence_start("The answer is Apollo 11.", "The answer is Apollo 10.") == len("The answer is Apollo")
    assert divergence_start("Vaccines cause autism.", "Bananas cause autism.") == 0
    with pytest.raises(ValueError, match="identical"):
        divergence_start("same", "same")


def test_scored_tokens_are_the_answer_and_end_of_turn(btiny: LoadedModel) -> None:
    prompt, conts, start = pair_texts(btiny, USERS[0], ITEMS[0])
    assert conts == ("The answer is cup. <|im_end|>", "The answer is water. <|im_end|>")
    (ra, rb), = _encode(btiny, [prompt], [conts], [start])
    assert ra.aligned and rb.aligned
    tok = btiny.tokenizer
    scored = [tok.convert_ids_to_tokens(i) for i, s in zip(ra.cont_ids, ra.scored, strict=True) if s]
    assert scored == ["cup", ".", "<|im_end|>"]


def test_cached_batch_equals_full_sequences_one_by_one(btiny: LoadedModel) -> None:
    fast = score_items(btiny, USERS, ITEMS)
    ref = score_full_reference(btiny, USERS, ITEMS)
    for f, r in zip(fast, ref, strict=True):
        assert f.correct.n_tokens == r.correct.n_tokens and f.wrong.n_tokens == r.wrong.n_tokens
        assert f.correct.logprob_sum == pytest.approx(r.correct.logprob_sum, abs=1e-4)
        assert f.wrong.logprob_sum == pytest.approx(r.wrong.logprob_sum, abs=1e-4)
        assert f.is_incorrect == r.is_incorrect
    alone = [score_items(btiny, [u], [it])[0] for u, it in zip(USERS, ITEMS, strict=True)]
    for f, a in zip(fast, alone, strict=True):
        assert f.correct.mean == pytest.approx(a.correct.mean, abs=1e-4)
        assert f.wrong.mean == pytest.approx(a.wrong.mean, abs=1e-4)
    assert len({round(f.correct.mean, 3) for f in fast}) > 1  # real, differing scores


def test_steering_applies_to_prompt_and_reply(btiny: LoadedModel) -> None:
    vec = random_vector(btiny, [1], seed=3, name="warm")
    vec.calibration = Calibration(dial=[0.0, 1.0], coef=[0.0, 2.0])
    dial = Dial(vec)

    def specs(w: float):  # type: ignore[no-untyped-def]
        return lambda n: dial.specs([w] * n)

    plain = score_items(btiny, USERS, ITEMS)
    zero = score_items(btiny, USERS, ITEMS, specs(0.0))
    warm = score_items(btiny, USERS, ITEMS, specs(1.0))
    ref = score_full_reference(btiny, USERS, ITEMS, specs(1.0))
    assert [z.correct.logprob_sum for z in zero] == [p.correct.logprob_sum for p in plain]
    assert all(abs(w.correct.logprob_sum - p.correct.logprob_sum) > 1e-3 for w, p in zip(warm, plain, strict=True))
    for w, r in zip(warm, ref, strict=True):
        assert w.correct.logprob_sum == pytest.approx(r.correct.logprob_sum, abs=1e-4)
        assert w.wrong.logprob_sum == pytest.approx(r.wrong.logprob_sum, abs=1e-4)
    # steering only the reply pass would differ: both passes must be steered
    calls: list[int] = []

    def only_prompt(n: int) -> list[SteerSpec]:
        calls.append(n)
        return [SteerSpec(vec, [2.0] * n if len(calls) == 1 else [0.0] * n)]

    half = score_items(btiny, USERS, ITEMS, only_prompt)
    assert calls == [4, 8]
    assert any(abs(h.correct.logprob_sum - w.correct.logprob_sum) > 1e-4 for h, w in zip(half, warm, strict=True))
    assert active_hooks(btiny.model) == 0


def test_bf16_matches_fp32_roughly(btiny: LoadedModel) -> None:
    fp32 = score_items(btiny, USERS[:2], ITEMS[:2])
    btiny.model.to(torch.bfloat16)
    bf16 = score_items(btiny, USERS[:2], ITEMS[:2])
    for a, b in zip(fp32, bf16, strict=True):
        assert a.correct.mean == pytest.approx(b.correct.mean, abs=0.1)


def test_score_from_token_logprobs() -> None:
    s = score_from_token_logprobs([0, 4, 8, 12], [None, -1.0, -2.0, -4.0], 8)
    assert (s.logprob_sum, s.n_tokens, s.mean) == (-6.0, 2, -3.0)
    with pytest.raises(ValueError, match="no tokens"):
        score_from_token_logprobs([0, 4], [None, -1.0], 9)


def test_shared_prefix_pass_changes_no_score(btiny: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    import steerwarm.bench.likelihood as lk

    users = ["hello . i feel sad . you know the answer . " + u for u in USERS]  # a long common opening
    vec = random_vector(btiny, [0, 2], seed=4, name="warm")
    vec.calibration = Calibration(dial=[0.0, 1.0], coef=[0.0, 1.0])
    dial = Dial(vec)
    real_forward = lk._forward
    calls: list[int] = []

    def spy(model, **kw):  # type: ignore[no-untyped-def]
        calls.append(kw["input_ids"].shape[1])
        return real_forward(model, **kw)

    for specs in (None, lambda n: dial.specs([1.0] * n)):
        calls.clear()
        monkeypatch.setattr(lk, "_forward", spy)
        fast = score_items(btiny, users, ITEMS, specs)
        monkeypatch.setattr(lk, "_forward", real_forward)
        assert len(calls) == 2 and calls[0] >= lk.MIN_SHARED_PREFIX  # the common prefix ran on its own
        ref = score_full_reference(btiny, users, ITEMS, specs)
        memo: dict[tuple[int, ...], object] = {}
        calls.clear()
        monkeypatch.setattr(lk, "_forward", spy)
        first = score_items(btiny, users, ITEMS, specs, memo)
        again = score_items(btiny, users[::-1], ITEMS[::-1], specs, memo)[::-1]
        monkeypatch.setattr(lk, "_forward", real_forward)
        assert len(memo) == 1 and len(calls) == 3  # the memo ran the shared prefix once for both batches
        for f, r, m1, m2 in zip(fast, ref, first, again, strict=True):
            assert f.correct.logprob_sum == pytest.approx(r.correct.logprob_sum, abs=1e-4)
            assert f.wrong.logprob_sum == pytest.approx(r.wrong.logprob_sum, abs=1e-4)
            assert m1 == m2 and m1.correct.logprob_sum == pytest.approx(f.correct.logprob_sum, abs=1e-5)
