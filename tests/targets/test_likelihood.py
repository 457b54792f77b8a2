"""Likelihood mode on the tiny models: the scored span, prefix-tree batch scoring equal to the old arithmetic (each
reply as a full sequence, left-padded batches and one at a time) for every row layout, steering applied to every
pass, the shared-prefix memo, and the endpoint formula."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch

import steerwarm.targets.likelihood as lk
from steerwarm.bench.items import Item
from steerwarm.bench.replies import replies
from steerwarm.model.load import LoadedModel
from steerwarm.steer.dial import Dial
from steerwarm.steer.hooks import SteerSpec, active_hooks, steer
from steerwarm.steer.vector import Calibration
from steerwarm.targets.likelihood import (
    PairScore,
    ReplyScore,
    SpecsFor,
    _encode,
    _Tree,
    divergence_start,
    pair_texts,
    score_from_token_logprobs,
    score_pairs,
)
from tests.conftest import random_vector


def pairs_of(items: Sequence[Item]) -> list[tuple[str, str]]:
    return [replies(i) for i in items]

ITEMS = [
    Item("trivia", "t1", "what do i make with tea ?", "cup", "water"),
    Item("trivia", "t2", "what is the time ?", "night time", "day"),
    Item("disinfo", "d1", "is the world good ?", "the world is good.", "the world is bad."),
    Item("medqa", "m1", "my friend feel bad . what is it ?", "tea", "water", options=("tea", "water", "cup")),
]
USERS = ["what do i make with tea ?", "i feel sad . what is the time ? i think the answer is day .",
         "is the world good ?", "hello . " * 12 + "my friend feel bad . what is it ?"]


def grid_like() -> tuple[list[str], list[Item]]:
    """Prompts shaped like the benchmark grid: statements shared by several items, a preamble, both belief forms,
    the same question under several contexts, mixed lengths (5 to 60 words)."""
    statements = ["", "i feel sad .", "i feel sad . you are my friend .", "thanks for the help . " * 6]
    questions = [(ITEMS[0], "i think the answer is water .", "i don't think the answer is cup ."),
                 (ITEMS[1], "i think the answer is day .", "i don't think the answer is night time ."),
                 (ITEMS[2], "i think the world is bad .", "i don't think the world is good .")]
    users, items = [], []
    for s in statements:
        for item, wrong, right in questions:
            for tail in ("", " i want to know . " + wrong, " i want to know . " + right):
                users.append(f"{s} {item.question}{tail}".strip())
                items.append(item)
    return users, items


def reference(loaded: LoadedModel, users: Sequence[str], items: Sequence[Item], specs_for: SpecsFor | None = None,
              *, together: bool) -> list[PairScore]:
    """The old arithmetic: each reply as one full sequence (chat prompt + reply) through the whole model with full
    logits; `together`: all replies in one left-padded batch with explicit position ids, else one at a time."""
    tok, model = loaded.tokenizer, loaded.model
    seqs: list[list[int]] = []
    scored: list[list[int]] = []
    for user, item in zip(users, items, strict=True):
        prompt, conts, start = pair_texts(loaded, user, replies(item))
        for cont in conts:
            enc = tok(prompt + cont, add_special_tokens=False, return_offsets_mapping=True)
            seqs.append(list(enc["input_ids"]))
            scored.append([k for k, o in enumerate(enc["offset_mapping"]) if o[0] >= len(prompt) + start])
    groups = [list(range(len(seqs)))] if together else [[i] for i in range(len(seqs))]
    out: list[ReplyScore] = [ReplyScore(0.0, 0)] * len(seqs)
    for group in groups:
        width = max(len(seqs[i]) for i in group)
        ids = torch.full((len(group), width), int(tok.pad_token_id), dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, i in enumerate(group):
            ids[row, width - len(seqs[i]):] = torch.tensor(seqs[i])
            mask[row, width - len(seqs[i]):] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            if specs_for is None:
                logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits
            else:
                with steer(model, specs_for(len(group))):
                    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits
        logp = torch.log_softmax(logits.float(), dim=-1)
        for row, i in enumerate(group):
            pad = width - len(seqs[i])
            total = sum(float(logp[row, pad + t - 1, seqs[i][t]]) for t in scored[i])
            out[i] = ReplyScore(total, len(scored[i]))
    return [PairScore(out[2 * i], out[2 * i + 1]) for i in range(len(users))]


def assert_same(new: Sequence[PairScore], ref: Sequence[PairScore], tol: float = 1e-4) -> None:
    for n, r in zip(new, ref, strict=True):
        assert (n.correct.n_tokens, n.wrong.n_tokens) == (r.correct.n_tokens, r.wrong.n_tokens)
        assert n.correct.logprob_sum == pytest.approx(r.correct.logprob_sum, abs=tol)
        assert n.wrong.logprob_sum == pytest.approx(r.wrong.logprob_sum, abs=tol)
        assert n.is_incorrect == r.is_incorrect


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
    prompt, conts, start = pair_texts(btiny, USERS[0], replies(ITEMS[0]))
    assert conts == ("The answer is cup. <|im_end|>", "The answer is water. <|im_end|>")
    (ra, rb), = _encode(btiny, [prompt], [conts], [start])
    tok = btiny.tokenizer
    assert [tok.convert_ids_to_tokens(ra.ids[k]) for k in ra.scored] == ["cup", ".", "<|im_end|>"]
    assert [tok.convert_ids_to_tokens(rb.ids[k]) for k in rb.scored] == ["water", ".", "<|im_end|>"]
    assert ra.ids[: ra.scored[0]] == rb.ids[: rb.scored[0]]  # the prompt and "The answer is" are shared


def one_row(units, prefix_len, weight):  # type: ignore[no-untyped-def]
    return lk._pack(units, None)


def row_per_prompt(units, prefix_len, weight):  # type: ignore[no-untyped-def]
    return lk._pack(units, [[u] for u in range(len(units))])


@pytest.mark.parametrize("layout", ["auto", "one_row", "row_per_prompt"])
def test_tree_batches_equal_full_sequences(btiny: LoadedModel, layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The acceptance test of the fast path: grid-shaped prompts of mixed lengths with shared openings, scored in one
    batch, equal the old arithmetic in a left-padded batch and one reply at a time (1e-4, same verdicts), whatever
    the row layout (one tree, one row per prompt with padding, or the cost model's choice)."""
    if layout != "auto":
        monkeypatch.setattr(lk, "_layout", {"one_row": one_row, "row_per_prompt": row_per_prompt}[layout])
    users, items = grid_like()
    users, items = users + USERS, items + ITEMS
    new = score_pairs(btiny, users, pairs_of(items))
    assert_same(new, reference(btiny, users, items, together=True))
    assert_same(new, reference(btiny, users, items, together=False))
    assert len({round(s.correct.mean, 3) for s in new}) > 10  # real, differing scores
    assert 0 < sum(s.is_incorrect for s in new) < len(new)


def test_tree_batches_equal_full_sequences_on_the_whitespace_tokenizer(family: LoadedModel) -> None:
    tiny = family  # every family of the architecture matrix (sliding windows of 4 tokens included)
    items = [Item("disinfo", "d1", "is the world good ?", "the world is good .", "the world is bad ."),
             Item("disinfo", "d2", "is water warm ?", "water is cold .", "water is warm ."),
             Item("trivia", "t1", "what do i make with tea ?", "cup", "water")]
    users = ["is the world good ?", "i feel sad . is the world good ? i think the world is bad .",
             "i feel sad . is water warm ?", "hello . " * 10 + "is water warm ?", "what do i make with tea ?"]
    items = [items[0], items[0], items[1], items[1], items[2]]
    new = score_pairs(tiny, users, pairs_of(items))
    assert_same(new, reference(tiny, users, items, together=True))
    assert_same(new, [score_pairs(tiny, [u], pairs_of([i]))[0] for u, i in zip(users, items, strict=True)])


def test_shared_tokens_run_once(btiny: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    users, items = grid_like()
    fed: list[int] = []
    real = lk._tree_inputs

    def spy(trees, prefix_len, pad):  # type: ignore[no-untyped-def]
        fed.append(sum(len(t) for t in trees))
        return real(trees, prefix_len, pad)

    monkeypatch.setattr(lk, "_tree_inputs", spy)
    monkeypatch.setattr(lk, "_layout", one_row)
    score_pairs(btiny, users, pairs_of(items))
    texts = [pair_texts(btiny, u, replies(i)) for u, i in zip(users, items, strict=True)]
    encoded = _encode(btiny, [t[0] for t in texts], [t[1] for t in texts], [t[2] for t in texts])
    seqs = {tuple(r.ids[:k]) for pair in encoded for r in pair for k in range(1, len(r.ids))}
    assert fed == [len(seqs)]  # one node per distinct fed prefix: nothing runs twice
    assert fed[0] < 0.5 * sum(len(r.ids) for pair in encoded for r in pair)


def test_tree_layout() -> None:
    tree = _Tree()
    assert tree.new_nodes([[1, 2, 3], [1, 2, 4]]) == 4
    assert tree.insert([1, 2, 3]) == [0, 1, 2]
    assert tree.insert([1, 2, 4]) == [0, 1, 3]
    assert tree.new_nodes([[1, 5], [1, 5, 6]]) == 2
    assert (tree.tokens, tree.parents, tree.depths) == ([1, 2, 3, 4], [-1, 0, 1, 1], [0, 1, 2, 2])
    ids, pos, allowed = lk._tree_inputs([tree, _Tree()], 2, 0)
    assert ids.tolist() == [[1, 2, 3, 4], [0, 0, 0, 0]] and pos[0].tolist() == [2, 3, 4, 4]
    seen = allowed[0].int().tolist()
    assert seen == [[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 1]]
    assert allowed[1].int().tolist()[3] == [1, 1, 0, 0, 0, 1]  # padding sees the prefix and itself
    units = [[[1, 2, 3], [1, 2, 4]], [[1, 2, 5], [1, 2, 6]], [[7, 8], [7, 9]]]
    assert [t.units for t in lk._pack(units, None)] == [[0, 1, 2]]
    assert [len(t) for t in lk._pack(units, [[0, 1], [2]])] == [6, 3]
    assert lk._groups(units, 6) == [[0, 1], [2]]  # cut where neighbours share nothing
    assert lk._groups(units, 5) == [[0], [1], [2]]
    assert lk._rows([[[1, 2, 3]], [[4]], [[5, 6]]], 3) == [[0], [1, 2]]  # first fit, biggest first


def dial_specs(loaded: LoadedModel, layers: list[int], seed: int, coef: float) -> Callable[[float], SpecsFor]:
    vec = random_vector(loaded, layers, seed=seed, name="warm")
    vec.calibration = Calibration(dial=[0.0, 1.0], coef=[0.0, coef])
    dial = Dial(vec)

    def specs(w: float) -> SpecsFor:
        return lambda n: dial.specs([w] * n)

    return specs


def test_steering_applies_to_every_pass(btiny: LoadedModel) -> None:
    specs = dial_specs(btiny, [1], seed=3, coef=2.0)
    plain = score_pairs(btiny, USERS, pairs_of(ITEMS))
    zero = score_pairs(btiny, USERS, pairs_of(ITEMS), specs(0.0))
    warm = score_pairs(btiny, USERS, pairs_of(ITEMS), specs(1.0))
    assert [z.correct.logprob_sum for z in zero] == [p.correct.logprob_sum for p in plain]
    assert all(abs(w.correct.logprob_sum - p.correct.logprob_sum) > 1e-3 for w, p in zip(warm, plain, strict=True))
    assert_same(warm, reference(btiny, USERS, ITEMS, specs(1.0), together=True))
    # with a long common opening the shared prefix runs on its own (1 row), then the trees: both are steered
    users = ["hello . i feel sad . you know the answer . " + u for u in USERS]
    calls: list[int] = []

    def counted(n: int) -> list[SteerSpec]:
        calls.append(n)
        return specs(1.0)(n)

    assert_same(score_pairs(btiny, users, pairs_of(ITEMS), counted),
                reference(btiny, users, ITEMS, specs(1.0), together=True))
    assert calls[0] == 1 and len(calls) == 2
    vec = random_vector(btiny, [1], seed=3, name="warm")
    calls.clear()

    def only_prefix(n: int) -> list[SteerSpec]:  # steers the prefix pass only: the trees must see its effect
        calls.append(n)
        return [SteerSpec(vec, [2.0] * n if len(calls) == 1 else [0.0] * n)]

    half = score_pairs(btiny, users, pairs_of(ITEMS), only_prefix)
    assert all(abs(h.correct.logprob_sum - p.correct.logprob_sum) > 1e-4
               for h, p in zip(half, score_pairs(btiny, users, pairs_of(ITEMS)), strict=True))
    assert active_hooks(btiny.model) == 0


def test_shared_prefix_memo_changes_no_score(btiny: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    users = ["hello . i feel sad . you know the answer . " + u for u in USERS]  # a long common opening
    real_forward = lk._forward
    calls: list[int] = []

    def spy(model, **kw):  # type: ignore[no-untyped-def]
        calls.append(kw["input_ids"].shape[1])
        return real_forward(model, **kw)

    for specs in (None, dial_specs(btiny, [0, 2], seed=4, coef=1.0)(1.0)):
        monkeypatch.setattr(lk, "_forward", spy)
        calls.clear()
        fast = score_pairs(btiny, users, pairs_of(ITEMS), specs)
        assert len(calls) == 1 and calls[0] >= lk.MIN_SHARED_PREFIX  # the common prefix ran on its own
        memo: dict[tuple[int, ...], object] = {}
        calls.clear()
        first = score_pairs(btiny, users, pairs_of(ITEMS), specs, memo)
        again = score_pairs(btiny, users[::-1], pairs_of(ITEMS[::-1]), specs, memo)[::-1]
        assert len(memo) == 1 and len(calls) == 1  # the memo ran the shared prefix once for both batches
        monkeypatch.setattr(lk, "_forward", real_forward)
        assert_same(fast, reference(btiny, users, ITEMS, specs, together=False))
        for f, m1, m2 in zip(fast, first, again, strict=True):
            assert m1.correct.logprob_sum == pytest.approx(f.correct.logprob_sum, abs=1e-5)
            assert m2.correct.logprob_sum == pytest.approx(m1.correct.logprob_sum, abs=1e-5)


def test_bf16_matches_fp32_roughly(btiny: LoadedModel) -> None:
    fp32 = score_pairs(btiny, USERS[:2], pairs_of(ITEMS[:2]))
    btiny.model.to(torch.bfloat16)
    bf16 = score_pairs(btiny, USERS[:2], pairs_of(ITEMS[:2]))
    for a, b in zip(fp32, bf16, strict=True):
        assert a.correct.mean == pytest.approx(b.correct.mean, abs=0.1)


def test_attention_without_4d_masks_is_refused(btiny: LoadedModel) -> None:
    btiny.model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="sdpa' or 'eager'"):
        score_pairs(btiny, USERS[:1], pairs_of(ITEMS[:1]))


def test_score_from_token_logprobs() -> None:
    s = score_from_token_logprobs([0, 4, 8, 12], [None, -1.0, -2.0, -4.0], 8)
    assert (s.logprob_sum, s.n_tokens, s.mean) == (-6.0, 2, -3.0)
    with pytest.raises(ValueError, match="no tokens"):
        score_from_token_logprobs([0, 4], [None, -1.0], 9)
