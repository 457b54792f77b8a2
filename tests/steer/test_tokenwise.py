"""Per-token steering buffers and operators (what the vLLM plugin runs inside each steered layer)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch._dynamo.testing import CompileCounter

from steerwarm.model.anatomy import decoder_layers, hidden_of, replace_hidden
from steerwarm.model.load import LoadedModel
from steerwarm.steer.hooks import SteerSpec, steer
from steerwarm.steer.tokenwise import LayerDirections, TokenSteering
from steerwarm.steer.vector import SteeringVector
from tests.conftest import random_vector


def _tokens(vectors: dict[str, SteeringVector], max_tokens: int = 32) -> TokenSteering:
    layers = sorted({layer for v in vectors.values() for layer in v.directions})
    lds = [LayerDirections(layer, tuple(sorted(vectors)),
                           torch.stack([vectors[n].directions[layer] for n in sorted(vectors)]),
                           tuple(vectors[n].norms[layer] for n in sorted(vectors))) for layer in layers]
    return TokenSteering(lds, max_tokens=max_tokens, device="cpu")


def _flat_steered_logits(loaded: LoadedModel, ids: torch.Tensor, tokens: TokenSteering) -> torch.Tensor:
    """Run the HF model with every layer's output passed through `tokens.apply` on its flattened token axis."""
    handles = []
    for index, layer in enumerate(decoder_layers(loaded.model)):
        if index not in tokens.columns:
            continue

        def hook(_m: torch.nn.Module, _a: object, out: object, index: int = index) -> object:
            h = hidden_of(out)
            flat = tokens.apply(index, h.reshape(-1, h.shape[-1])).reshape(h.shape)
            return replace_hidden(out, flat)

        handles.append(layer.register_forward_hook(hook))
    try:
        with torch.no_grad():
            return loaded.model(ids).logits
    finally:
        for h in handles:
            h.remove()


def test_token_buffers_reproduce_the_hooks_bit_for_bit(tiny: LoadedModel) -> None:
    warm = random_vector(tiny, layers=[1], seed=3, name="warm")
    cold = random_vector(tiny, layers=[2], seed=4, name="cold")
    tokens = _tokens({"warm": warm, "cold": cold})
    ids = torch.tensor([[1, 5, 9, 12, 7, 3]])
    tokens.fill(tokens.row({1: {"warm": 0.4}}).reshape(1, -1), [ids.shape[1]])
    with steer(tiny.model, [SteerSpec(warm, 0.4)]), torch.no_grad():
        expected = tiny.model(ids).logits
    assert torch.equal(_flat_steered_logits(tiny, ids, tokens), expected)
    with torch.no_grad():
        assert not torch.equal(tiny.model(ids).logits, expected)  # the steering is visible at all
    # cold at its own layer, through the same buffers
    tokens.fill(tokens.row({2: {"cold": -0.7}}).reshape(1, -1), [ids.shape[1]])
    with steer(tiny.model, [SteerSpec(cold, -0.7)]), torch.no_grad():
        expected = tiny.model(ids).logits
    assert torch.equal(_flat_steered_logits(tiny, ids, tokens), expected)


def test_zero_row_is_bit_identical_to_no_steering(tiny: LoadedModel) -> None:
    tokens = _tokens({"warm": random_vector(tiny, name="warm")})
    ids = torch.tensor([[2, 4, 6, 8]])
    tokens.fill(np.stack([tokens.row({0: {"warm": 0.5}})]), [4])  # dirty the buffer first
    tokens.fill(np.stack([tokens.row({})]), [4])
    with torch.no_grad():
        plain = tiny.model(ids).logits
    assert torch.equal(_flat_steered_logits(tiny, ids, tokens), plain)


def test_each_request_gets_its_coefficients_and_padding_gets_none(tiny: LoadedModel) -> None:
    vec = random_vector(tiny, layers=[0], name="warm")
    tokens = _tokens({"warm": vec}, max_tokens=16)
    coefs = [0.5, -0.25, 0.0]
    rows = np.stack([tokens.row({0: {"warm": c}}) for c in coefs])
    tokens.fill(np.stack([tokens.row({0: {"warm": 9.0}})]), [12])  # stale values beyond this step's tokens
    tokens.fill(rows, [2, 3, 1])
    hidden = torch.zeros(8, tiny.hidden_size)  # 6 real tokens + 2 padding slots
    out = tokens.apply(0, hidden)
    expect = [(c * vec.norms[0]) for c in coefs for _ in range({0.5: 2, -0.25: 3, 0.0: 1}[c])]
    for t, scale in enumerate(expect):
        assert torch.equal(out[t], torch.tensor(scale, dtype=torch.float32) * vec.directions[0])
    assert torch.equal(out[6:], torch.zeros(2, tiny.hidden_size))


def test_buffers_never_move_and_a_compiled_graph_reads_each_step(tiny: LoadedModel) -> None:
    vec = random_vector(tiny, layers=[1], name="warm")
    tokens = _tokens({"warm": vec})
    ptr = tokens.buffer.data_ptr()
    counter = CompileCounter()

    @torch.compile(backend=counter, fullgraph=True)
    def layer_out(h: torch.Tensor) -> torch.Tensor:
        return tokens.apply(1, torch.tanh(h)) * 2.0

    h = torch.randn(5, tiny.hidden_size)
    for coef in (0.0, 0.3, -1.1):
        tokens.fill(np.stack([tokens.row({1: {"warm": coef}})]), [5])
        assert tokens.buffer.data_ptr() == ptr
        assert torch.equal(layer_out(h), tokens.apply(1, torch.tanh(h)) * 2.0)
    assert counter.frame_count == 1  # one graph, the operator opaque inside it, buffers read at run time


def test_monitor_projection_per_token(tiny: LoadedModel) -> None:
    vec = random_vector(tiny, layers=[1], name="warm")
    lds = [LayerDirections(1, ("warm",), vec.directions[1][None], (vec.norms[1],))]
    tokens = TokenSteering(lds, max_tokens=8, device="cpu", monitor=(1, vec.directions[1], 4.0))
    stream = torch.randn(3, tiny.hidden_size)
    tokens.read(stream)
    assert torch.allclose(tokens.readout[:3], stream @ vec.directions[1] / 4.0)


def test_fill_refuses_more_tokens_than_slots(tiny: LoadedModel) -> None:
    tokens = _tokens({"warm": random_vector(tiny, name="warm")}, max_tokens=4)
    with pytest.raises(ValueError, match="exceed the 4 steering slots"):
        tokens.fill(np.stack([tokens.row({})]), [5])
    with pytest.raises(ValueError, match="2 rows for 1 requests"):
        tokens.fill(np.stack([tokens.row({}), tokens.row({})]), [1])


def test_eager_steps_skip_layers_nobody_steers_and_graphs_never_do(tiny: LoadedModel) -> None:
    warm = random_vector(tiny, layers=[1], seed=3, name="warm")
    tokens = _tokens({"warm": warm})
    h = torch.randn(4, tiny.hidden_size)
    tokens.fill(np.stack([tokens.row({1: {"warm": 0.3}}), tokens.row({})]), [2, 2])
    assert tokens.live == {0: False, 1: True, 2: False}
    assert tokens.apply(0, h) is h  # untouched: every row adds exactly zero at layer 0
    steered = tokens.apply(1, h)
    assert torch.equal(steered[:2], h[:2] + (np.float32(0.3 * warm.norms[1]) * warm.directions[1]))
    assert torch.equal(steered[2:], h[2:])

    counter = CompileCounter()

    @torch.compile(backend=counter, fullgraph=True)
    def traced(x: torch.Tensor) -> torch.Tensor:
        return tokens.apply(0, x)

    tokens.fill(np.stack([tokens.row({0: {"warm": 0.5}})]), [4])  # the graph was traced while layer 0 is live...
    assert torch.equal(traced(h), tokens.apply(0, h))
    tokens.fill(np.stack([tokens.row({})]), [4])  # ...and still adds (zeros) once it is not: no branch inside
    assert torch.equal(traced(h), h)
    assert counter.frame_count == 1  # one graph for both steps: it does not depend on which layers are live
