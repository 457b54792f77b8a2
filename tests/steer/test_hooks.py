"""Exact behaviour of the steering hooks on a tiny random-weight Llama."""

from __future__ import annotations

import pytest
import torch

from steerwarm.model.load import LoadedModel, fingerprint
from steerwarm.steer.hooks import SteerSpec, active_hooks, record_residuals, steer
from steerwarm.steer.vector import FingerprintMismatchError
from tests.conftest import make_tiny_model, random_vector


def _ids(loaded: LoadedModel, texts: list[str]) -> dict[str, torch.Tensor]:
    return dict(loaded.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False))


def _resid(loaded: LoadedModel, batch: dict[str, torch.Tensor], specs: list[SteerSpec]) -> dict[int, torch.Tensor]:
    layers = list(range(loaded.num_layers))
    with torch.no_grad(), steer(loaded.model, specs), record_residuals(loaded.model, layers) as rec:
        loaded.model(**batch)
    return {k: v[0] for k, v in rec.items()}


def test_adds_exactly_coef_times_norm_times_direction_at_chosen_layer(tiny: LoadedModel) -> None:
    vec = random_vector(tiny, layers=[1])
    batch = _ids(tiny, ["hello how are you ?"])
    base = _resid(tiny, batch, [])
    steered = _resid(tiny, batch, [SteerSpec(vec, 0.7)])
    assert torch.equal(steered[0], base[0])  # before the steered layer: untouched
    expected = base[1] + vec.delta(1, 0.7)
    assert torch.equal(steered[1], expected)
    assert not torch.allclose(steered[2], base[2])  # the change propagates downstream


def test_two_vectors_add_up(tiny: LoadedModel) -> None:
    a, b = random_vector(tiny, [1], seed=1), random_vector(tiny, [1], seed=2)
    batch = _ids(tiny, ["the cup of tea"])
    base = _resid(tiny, batch, [])
    both = _resid(tiny, batch, [SteerSpec(a, 0.3), SteerSpec(b, -0.2)])
    want = base[1] + (a.delta(1, 0.3) + b.delta(1, -0.2))
    assert torch.allclose(both[1], want, atol=1e-6, rtol=0)


def test_coefficient_zero_is_bit_identical_to_no_hook(family: LoadedModel) -> None:
    tiny = family  # every family of the architecture matrix
    vec = random_vector(tiny)
    batch = _ids(tiny, ["i failed my exam", "how to make tea ?"])
    with torch.no_grad():
        plain = tiny.model(**batch).logits
        with steer(tiny.model, [SteerSpec(vec, 0.0)]):
            zero = tiny.model(**batch).logits
        with steer(tiny.model, [SteerSpec(vec, [0.0, 0.0])]):
            zeros = tiny.model(**batch).logits
    assert torch.equal(plain, zero)
    assert torch.equal(plain, zeros)


def test_mixed_batch_rows_equal_their_single_runs(family: LoadedModel) -> None:
    tiny = family
    vec = random_vector(tiny, layers=[0, 2])
    texts = ["i feel sad today", "what is the answer", "make me a cup"]  # same length: no padding
    coefs = [0.0, 0.8, -0.5]
    batch = _ids(tiny, texts)
    with torch.no_grad():
        with steer(tiny.model, [SteerSpec(vec, coefs)]):
            mixed = tiny.model(**batch).logits
        for i, c in enumerate(coefs):
            with steer(tiny.model, [SteerSpec(vec, c)]):
                uniform = tiny.model(**batch).logits  # same shapes, uniform coefficient: bit-exact
                alone = tiny.model(**_ids(tiny, [texts[i]])).logits  # batch of one: same up to float rounding
            assert torch.equal(mixed[i], uniform[i])
            assert torch.allclose(mixed[i], alone[0], atol=1e-5, rtol=0)


def test_left_padding_is_never_steered(tiny: LoadedModel) -> None:
    vec = random_vector(tiny, layers=[1])
    batch = _ids(tiny, ["hello", "what is the answer to this question"])
    pad = batch["attention_mask"][0] == 0
    assert pad.sum() > 0
    base = _resid(tiny, batch, [])
    steered = _resid(tiny, batch, [SteerSpec(vec, [1.0, 1.0])])
    assert torch.equal(steered[1][0, pad], base[1][0, pad])
    assert not torch.allclose(steered[1][0, ~pad], base[1][0, ~pad])


def test_every_cached_decode_step_is_steered(tiny: LoadedModel) -> None:
    vec = random_vector(tiny, layers=[1])
    batch = _ids(tiny, ["you are kind", "what is the answer and why"])
    next_tok = torch.tensor([[7], [9]])
    full_ids = torch.cat([batch["input_ids"], next_tok], dim=1)
    full_mask = torch.cat([batch["attention_mask"], torch.ones(2, 1, dtype=torch.long)], dim=1)
    with torch.no_grad(), steer(tiny.model, [SteerSpec(vec, [0.6, -0.9])]):
        pre = tiny.model(**batch, use_cache=True)
        step = tiny.model(input_ids=next_tok, attention_mask=full_mask, past_key_values=pre.past_key_values,
                          use_cache=True).logits[:, -1]
        whole = tiny.model(input_ids=full_ids, attention_mask=full_mask, use_cache=False).logits[:, -1]
    with torch.no_grad():
        unsteered = tiny.model(input_ids=full_ids, attention_mask=full_mask).logits[:, -1]
    assert torch.allclose(step, whole, atol=1e-5, rtol=0)
    assert not torch.allclose(step, unsteered, atol=1e-3)


def test_generate_with_cache_matches_no_cache(tiny: LoadedModel) -> None:
    vec = random_vector(tiny, layers=[1, 2])
    batch = _ids(tiny, ["hello", "i failed my exam and i feel stupid"])
    outs = {}
    for cache in (True, False):
        with torch.no_grad(), steer(tiny.model, [SteerSpec(vec, [1.5, -1.5])]):
            outs[cache] = tiny.model.generate(**batch, max_new_tokens=8, do_sample=False, use_cache=cache,
                                              pad_token_id=tiny.tokenizer.pad_token_id)
    assert torch.equal(outs[True], outs[False])


def test_hooks_removed_after_exception(tiny: LoadedModel) -> None:
    vec = random_vector(tiny)
    before = active_hooks(tiny.model)
    with pytest.raises(RuntimeError, match="boom"), steer(tiny.model, [SteerSpec(vec, 0.5)]):
        assert active_hooks(tiny.model) > before
        raise RuntimeError("boom")
    assert active_hooks(tiny.model) == before == 0
    with pytest.raises(RuntimeError), record_residuals(tiny.model, [0, 1]):
        raise RuntimeError("boom")
    assert active_hooks(tiny.model) == 0


def test_bf16_steering(tiny: LoadedModel) -> None:
    model = make_tiny_model(dtype=torch.bfloat16)
    loaded = LoadedModel(model, tiny.tokenizer, "tiny", tiny.path, fingerprint(model))
    assert loaded.fingerprint == tiny.fingerprint  # same weights, other precision: same fingerprint
    vec = random_vector(loaded, layers=[1])
    batch = _ids(loaded, ["hello how are you ?"])
    base = _resid(loaded, batch, [])
    with torch.no_grad(), steer(model, [SteerSpec(vec, 0.5)]), record_residuals(model, [1]) as rec:
        out = model(**batch).logits
    assert out.dtype == torch.bfloat16
    want = (base[1].to(torch.bfloat16) + vec.delta(1, 0.5).to(torch.bfloat16)).float()
    assert torch.equal(rec[1][0], want)
    with torch.no_grad(), steer(model, [SteerSpec(vec, 0.0)]):
        assert torch.equal(model(**batch).logits, model(**batch).logits)


def test_fingerprint_mismatch_raises_with_both_prints(tiny: LoadedModel) -> None:
    other = make_tiny_model(seed=5)
    vec = random_vector(tiny)
    with pytest.raises(FingerprintMismatchError) as info:
        steer(other, [SteerSpec(vec, 0.1)])
    assert vec.model_fingerprint in str(info.value)
    assert fingerprint(other) in str(info.value)


def test_bad_specs_are_refused(tiny: LoadedModel) -> None:
    vec = random_vector(tiny, layers=[1])
    with pytest.raises(ValueError, match="out of range"):
        steer(tiny.model, [SteerSpec(vec, 0.1, layers=[7])])
    with pytest.raises(ValueError, match="finite"):
        steer(tiny.model, [SteerSpec(vec, float("nan"))])
    with pytest.raises(ValueError, match="batch"):
        with torch.no_grad(), steer(tiny.model, [SteerSpec(vec, [0.1, 0.2, 0.3])]):
            tiny.model(**_ids(tiny, ["hello", "hello"]))
