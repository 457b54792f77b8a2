"""The prepacked oneDNN linear path: same float32 products (up to summation order) for batched calls, the module's
own weight for small ones, and `remove()` gives every module back its own forward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from steerwarm.serve.kernels import MIN_ROWS, install, unavailable_reason
from tests.conftest import make_tiny_model

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=f"{unavailable_reason()}")


def test_batched_calls_use_the_packed_weight_and_agree_with_the_module() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(64, 96)
    x = torch.randn(3, MIN_ROWS, 64)  # 24 rows: the packed path
    small = torch.randn(MIN_ROWS - 1, 64)  # the module's own path
    want, want_small = lin(x), lin(small)
    fast = install(lin)
    assert fast.active and "forward" in lin.__dict__
    got = lin(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert torch.equal(lin(small), want_small)  # below MIN_ROWS: bit-identical, the same kernel
    # the packed copy really is used: changing the parameter in place only reaches the small-batch path
    with torch.no_grad():
        lin.weight.zero_()
    assert not torch.equal(lin(x), lin.bias.expand(3, MIN_ROWS, 96))
    fast.remove()
    assert "forward" not in lin.__dict__ and torch.equal(lin(x), lin.bias.expand(3, MIN_ROWS, 96))


def test_install_takes_float32_cpu_linears_only_and_remove_restores_the_model() -> None:
    model = make_tiny_model()
    ids = torch.arange(6, 20)[None].repeat(2, 1)
    with torch.no_grad():
        before = model(input_ids=ids).logits
        fast = install(model)
        n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
        assert len(fast.modules) == n_linear
        torch.testing.assert_close(model(input_ids=ids).logits, before, rtol=1e-4, atol=1e-5)
        fast.remove()
        assert torch.equal(model(input_ids=ids).logits, before)
    half = make_tiny_model(dtype=torch.bfloat16)
    assert not install(half).active  # bfloat16 weights are left to the module


def test_an_engine_with_fast_kernels_keeps_rows_equal_to_solo_runs_and_removes_them_on_close() -> None:
    from steerwarm.serve.engine import Engine
    from steerwarm.serve.registry import SteeringRegistry
    from tests.conftest import loaded, make_tokenizer
    from tests.serve.test_slots import PROMPTS, greedy_request, run_joined

    model = loaded(make_tiny_model(), make_tokenizer(), "tiny")
    engine = Engine(model, SteeringRegistry({}, None, dial_note="test", num_layers=model.num_layers), max_batch=16,
                    fast_kernels=True)
    assert "prepacked" in engine.kernels_note
    reqs = [greedy_request(model, p, 14) for p in PROMPTS * 3]  # 12 rows: batched decode takes the packed path
    solo = [run_joined(engine, [r], [0])[0] for r in reqs]
    assert run_joined(engine, reqs, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]) == solo
    engine.close()
    assert not any("forward" in m.__dict__ for m in model.model.modules())
