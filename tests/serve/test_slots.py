"""KV slots: a row joining a running batch copies no running row, a finished row's slot is reused by moving one
row, and every family of the architecture matrix (sliding-window and hybrid attention included) serves the tokens
`generate` makes."""

from __future__ import annotations

import pytest
import torch
from transformers import MistralConfig

from steerwarm.model.load import LoadedModel
from steerwarm.serve.engine import ChoiceDone, Engine, EngineRequest, Event, SamplingParams
from steerwarm.serve.registry import RowSteering, SteeringRegistry
from steerwarm.serve.slots import MIN_COLS, SlotCache, attention_masks
from tests.conftest import loaded, make_tiny_model, make_tokenizer
from tests.families import FAMILIES, WINDOW, family_model

PROMPTS = ["i feel sad today and i want to know why the world is cold", "what is the answer to this question ?",
           "make me a cup of tea please", "hello"]


def _engine(model: LoadedModel, max_batch: int = 8) -> Engine:
    return Engine(model, SteeringRegistry({}, None, dial_note="test", num_layers=model.num_layers),
                  max_batch=max_batch)


def greedy_request(model: LoadedModel, prompt: str, max_tokens: int = 12) -> EngineRequest:
    ids = tuple(model.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    return EngineRequest(ids, SamplingParams(max_tokens=max_tokens, temperature=0.0, logprobs=0), RowSteering())


def _tokens(events: list[Event]) -> list[int]:
    done = [e for e in events if isinstance(e, ChoiceDone)]
    assert len(done) == 1 and done[0].logprobs is not None
    return [t.token_id for t in done[0].logprobs]


def run_joined(engine: Engine, reqs: list[EngineRequest], join_at: list[int]) -> list[list[int]]:
    events: list[list[Event]] = [[] for _ in reqs]
    step = 0
    while step <= max(join_at) or engine.running_rows:
        for i, at in enumerate(join_at):
            if at == step:
                engine.submit([reqs[i]], [events[i].append])
        engine.step()
        step += 1
        assert step < 1000
    return [_tokens(ev) for ev in events]


def test_a_joining_row_copies_no_running_row() -> None:
    model = loaded(make_tiny_model(), make_tokenizer(), "tiny")
    engine = _engine(model)
    first: list[Event] = []
    engine.submit([greedy_request(model, PROMPTS[0], max_tokens=30)], [first.append])
    for _ in range(4):
        engine.step()
    slots = engine.kv_slots
    assert slots is not None and engine.running_rows == 1
    assert engine.kv_bytes == slots.nbytes > 0 and engine.kv_grows == 0
    length = len(PROMPTS[0].split()) + 4
    before_ptr = slots.row_storage(0)
    before = [k[0, :, :length].clone() for k in slots.keys if k is not None]
    later: list[list[Event]] = [[], []]
    engine.submit([greedy_request(model, PROMPTS[1]), greedy_request(model, PROMPTS[2])],
                  [later[0].append, later[1].append])
    engine.step()  # both join (prefilled into rows 1 and 2) and all three decode one token
    assert engine.running_rows == 3 and engine.kv_slots is slots
    assert slots.row_storage(0) == before_ptr and engine.kv_grows == 0 and slots.cols == MIN_COLS
    for k, old in zip([k for k in slots.keys if k is not None], before, strict=True):
        assert torch.equal(k[0, :, :length], old)  # the running row's keys were neither moved nor rewritten


def test_a_finished_row_hands_its_slot_to_the_last_row() -> None:
    model = loaded(make_tiny_model(), make_tokenizer(), "tiny")
    engine = _engine(model)
    reqs = [greedy_request(model, PROMPTS[0], 20), greedy_request(model, PROMPTS[1], 3),
            greedy_request(model, PROMPTS[2], 20)]
    solo = [run_joined(engine, [r], [0])[0] for r in reqs]
    together = run_joined(engine, reqs, [0, 0, 0])  # row 1 ends after 3 tokens; row 2 moves into its slot and goes on
    assert together == solo
    assert engine.running_rows == 0


@pytest.mark.parametrize("family", list(FAMILIES))
def test_engine_tokens_equal_generate_in_every_family(family: str) -> None:
    """Every family of the architecture matrix, sliding-window and hybrid ones included, serves the tokens its own
    `generate` makes, solo and joined mid-generation in one batch."""
    model = family_model(family)
    net, tok = model.model, model.tokenizer
    engine = _engine(model)
    reqs = [greedy_request(model, p, 14) for p in PROMPTS]
    want = []
    for r in reqs:
        with torch.no_grad():
            out = net.generate(torch.tensor([r.prompt_ids]), max_new_tokens=14, do_sample=False,
                               pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        new = out[0, len(r.prompt_ids):].tolist()
        want.append(new[:new.index(tok.eos_token_id)] if tok.eos_token_id in new else new)  # the engine omits EOS
    assert max(len(r.prompt_ids) for r in reqs) > 2 * WINDOW and sum(map(len, want)) > 20  # windows really cut
    assert [run_joined(engine, [r], [0])[0] for r in reqs] == want
    assert run_joined(engine, reqs, [0, 2, 2, 5]) == want  # joined mid-generation, in one batch


def test_masks_follow_positions_and_windows() -> None:
    cfg = MistralConfig(sliding_window=2)
    cfg._attn_implementation = "sdpa"
    m = attention_masks(cfg, torch.tensor([[3], [1]]), 5, torch.float32)
    assert m[:, 0, 0].tolist() == [[False, False, True, True, False], [True, True, False, False, False]]
    cfg.layer_types = ["full_attention", "sliding_attention"]
    both = attention_masks(cfg, torch.tensor([[3]]), 4, torch.float32)
    assert both["full_attention"][0, 0, 0].tolist() == [True] * 4
    assert both["sliding_attention"][0, 0, 0].tolist() == [False, False, True, True]
    cfg._attn_implementation = "eager"
    additive = attention_masks(cfg, torch.tensor([[1]]), 3, torch.float32)["full_attention"]
    assert additive[0, 0, 0].tolist() == [0.0, 0.0, torch.finfo(torch.float32).min]
    cfg.layer_types = ["chunked_attention"]
    with pytest.raises(ValueError, match="chunked_attention"):
        attention_masks(cfg, torch.tensor([[1]]), 3, torch.float32)


def test_slot_columns_grow_by_doubling_and_keep_every_row() -> None:
    slots = SlotCache(2, dtype=torch.float32, device=torch.device("cpu"), cols=4)
    slots.bind(0, torch.tensor([[0, 1, 2], [0, 1, 2]]), 3)
    k = torch.arange(2 * 1 * 3 * 2, dtype=torch.float32).reshape(2, 1, 3, 2)
    keys, _ = slots.update(k, k, 0)
    assert torch.equal(keys, k)
    with pytest.raises(ValueError, match="reserve"):
        slots.bind(0, torch.tensor([[4], [4]]), 5)
    assert not slots.reserve(4) and slots.cols == 4
    assert slots.reserve(5) and slots.cols == 8
    slots.bind(1, torch.tensor([[4]]), 5)
    keys, _ = slots.update(torch.ones(1, 1, 1, 2), torch.ones(1, 1, 1, 2), 0)
    assert keys.shape == (1, 1, 5, 2) and torch.equal(keys[0, :, :3], k[1])
    slots.move(1, 0, 5)
    assert torch.equal(slots.keys[0][0], slots.keys[0][1])  # type: ignore[index]
