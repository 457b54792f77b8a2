"""Forked scoring (`likelihood.score_pairs_forked`, `steer.fork`): several dial values scored in one pass whose
layers below the first steered layer run once equal each dial value scored on its own (`score_pairs`), on Llama and
on families with sliding-window and hybrid attention, with and without the shared-prefix cache.

Tolerance: forked and separate passes run the same rows through the same layers with the same inputs; only the
batch size of the matrix products above the fork layer differs (S * R rows instead of R), which may change the
blocking of a float32 GEMM and so the last bits of a sum. 1e-5 on a log-probability sum of a few tokens is ~100x
float32 rounding at these magnitudes and far below any difference a verdict could turn on; verdicts must match
exactly."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

import steerwarm.targets.likelihood as lk
from steerwarm.model.load import LoadedModel
from steerwarm.steer.dial import Dial
from steerwarm.steer.fork import ForkPlan, first_steered_layer
from steerwarm.steer.hooks import active_hooks
from steerwarm.steer.vector import Calibration
from steerwarm.targets.likelihood import PairScore, score_pairs, score_pairs_forked
from tests.conftest import random_vector
from tests.families import family_model
from tests.targets.test_likelihood import ITEMS, USERS, grid_like, pairs_of

WARMTHS = [-1.0, -0.5, 0.0, 0.5, 1.0]
TOL = 1e-5


def tiny_dial(loaded: LoadedModel, warm_layer: int, cold_layer: int) -> Dial:
    warm = random_vector(loaded, [warm_layer], seed=5, name="warm")
    warm.calibration = Calibration(dial=[0.0, 1.0], coef=[0.0, 2.0])
    cold = random_vector(loaded, [cold_layer], seed=6, name="cold")
    cold.calibration = Calibration(dial=[0.0, 1.0], coef=[0.0, 2.0])
    return Dial(warm, cold)


def separate(loaded: LoadedModel, dial: Dial, w: float, users: Sequence[str], pairs: Sequence[tuple[str, str]],
             memo: dict[tuple[int, ...], object] | None = None) -> list[PairScore]:
    specs = None if w == 0 else (lambda n: dial.specs([w] * n))
    out: list[PairScore] = score_pairs(loaded, users, pairs, specs, memo)
    return out


def forked(loaded: LoadedModel, dial: Dial, warmths: Sequence[float], users: Sequence[str],
           pairs: Sequence[tuple[str, str]], memo: dict[tuple[int, ...], object] | None = None
           ) -> list[list[PairScore]]:
    out: list[list[PairScore]] = score_pairs_forked(loaded, users, pairs, len(warmths),
                                                    lambda streams: dial.specs([warmths[s] for s in streams]), memo)
    return out


def assert_equal(new: Sequence[PairScore], ref: Sequence[PairScore]) -> None:
    for n, r in zip(new, ref, strict=True):
        assert (n.correct.n_tokens, n.wrong.n_tokens) == (r.correct.n_tokens, r.wrong.n_tokens)
        assert abs(n.correct.logprob_sum - r.correct.logprob_sum) <= TOL
        assert abs(n.wrong.logprob_sum - r.wrong.logprob_sum) <= TOL
        assert n.is_incorrect == r.is_incorrect


def check(loaded: LoadedModel, dial: Dial, users: Sequence[str], pairs: Sequence[tuple[str, str]]) -> None:
    together = forked(loaded, dial, WARMTHS, users, pairs)
    alone = [separate(loaded, dial, w, users, pairs) for w in WARMTHS]
    for f, s in zip(together, alone, strict=True):
        assert_equal(f, s)
    # the dial values really differ, so equality is not trivial
    assert len({round(a[0].correct.logprob_sum, 4) for a in alone}) == len(WARMTHS)
    assert active_hooks(loaded.model) == 0


def test_fork_plan(btiny: LoadedModel) -> None:
    dial = tiny_dial(btiny, 1, 2)
    assert first_steered_layer(dial.specs([0.0, 0.5, -1.0])) == 1
    assert first_steered_layer(dial.specs([0.0, -1.0])) == 2  # the cold vector only
    assert first_steered_layer(dial.specs([0.0, 0.0])) is None

    def plan(warmths: list[float]) -> ForkPlan | None:
        return ForkPlan.build(lambda streams: dial.specs([warmths[s] for s in streams]), len(warmths))

    # warm values fork at 1 (the carrier goes on as stream 0, a cold value), cold values and 0 at 2
    p = plan(WARMTHS)
    assert p is not None and p.forks == [(1, [3, 4]), (2, [0, 1])]
    assert p.segments == [[3, 4, 0], [3, 4, 0, 1, 2]] and p.position == [2, 3, 4, 0, 1]
    p = plan([0.5, 1.0])  # one fork layer, no carrier left
    assert p is not None and p.forks == [(1, [0, 1])] and p.segments == [[0, 1]] and p.position == [0, 1]
    p = plan([0.0, 1.0])
    assert p is not None and p.segments == [[1, 0]] and p.position == [1, 0]
    assert plan([0.0, 0.0]) is None
    bad = ForkPlan([(7, [0, 1])], [[0, 1]], [0, 1])
    with pytest.raises(ValueError, match="out of range"), bad.apply(btiny.model, dial.specs, 1):
        pass
    assert active_hooks(btiny.model) == 0


@pytest.mark.parametrize("layers", [(1, 2), (0, 0), (2, 1)])
def test_forked_equals_separate_on_llama(btiny: LoadedModel, layers: tuple[int, int]) -> None:
    """Grid-shaped prompts (shared statements, both belief forms), warm and cold vectors at different layers (the
    fork is at the lower one), dial values of both signs and 0."""
    users, items = grid_like()
    check(btiny, tiny_dial(btiny, *layers), users + USERS, pairs_of(items + ITEMS))


def test_forked_with_the_shared_prefix_cache(btiny: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long common opening runs once as a cached prefix, itself forked (one row per stream above the fork), and
    the memo serves a second batch without running it again."""
    users = ["hello . i feel sad . you know the answer . " + u for u in USERS]
    dial = tiny_dial(btiny, 1, 2)
    prefix_passes: list[int] = []
    real = lk._forward

    def spy(model: torch.nn.Module, **kw: object) -> object:
        prefix_passes.append(1)
        return real(model, **kw)

    monkeypatch.setattr(lk, "_forward", spy)
    memo: dict[tuple[int, ...], object] = {}
    first = forked(btiny, dial, WARMTHS, users, pairs_of(ITEMS), memo)
    again = forked(btiny, dial, WARMTHS, users[::-1], pairs_of(ITEMS[::-1]), memo)
    assert len(prefix_passes) == 1 and len(memo) == 1
    monkeypatch.setattr(lk, "_forward", real)
    for w, f, a in zip(WARMTHS, first, again, strict=True):
        alone = separate(btiny, dial, w, users, pairs_of(ITEMS))
        assert_equal(f, alone)
        assert_equal(a[::-1], alone)


def test_one_stream_and_no_steering(btiny: LoadedModel) -> None:
    dial = tiny_dial(btiny, 1, 2)
    users, pairs = USERS, pairs_of(ITEMS)
    (one,) = forked(btiny, dial, [0.5], users, pairs)
    assert [s.correct.logprob_sum for s in one] == [s.correct.logprob_sum for s in separate(btiny, dial, 0.5, users,
                                                                                             pairs)]
    zeros = forked(btiny, dial, [0.0, 0.0], users, pairs)
    plain = score_pairs(btiny, users, pairs)
    assert all([s.correct.logprob_sum for s in z] == [p.correct.logprob_sum for p in plain] for z in zeros)
    assert forked(btiny, dial, [0.0, 1.0], [], []) == [[], []]


@pytest.mark.parametrize("family", ["qwen2", "gemma3", "gpt2"])
def test_forked_equals_separate_on_other_families(family: str) -> None:
    """Hybrid sliding-window attention (Qwen2, Gemma 3: windows of 4 tokens, so the prompts really cut them) and
    GPT-2 (its layers take the mask positionally)."""
    tiny = family_model(family)
    items = [ITEMS[0], ITEMS[2], ITEMS[2]]
    users = ["what do i make with tea ?", "is the world good ?", "i feel sad . is the world good ? i think the "
             "world is bad ."]
    check(tiny, tiny_dial(tiny, 1, 2), users, pairs_of(items))
    long = ["hello . i feel sad . you know the answer . " + u for u in users]  # the cached prefix path
    check(tiny, tiny_dial(tiny, 0, 1), long, pairs_of(items))

