"""The anatomy of every family of the architecture matrix: decoder blocks, final norm and unembedding are the ones
the model itself runs (read back through them, the last block's output gives the model's logits), and a model
without them is refused by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from steerwarm.model.anatomy import decoder_layers, final_norm, unembedding
from steerwarm.model.load import LoadedModel
from steerwarm.steer.hooks import record_residuals


def test_final_norm_and_unembedding_reproduce_the_logits(family: LoadedModel) -> None:
    model = family.model
    blocks = decoder_layers(model)
    assert len(blocks) == family.num_layers == 3
    ids = family.tokenizer("i feel sad today and the world is cold", return_tensors="pt")["input_ids"]
    with torch.no_grad(), record_residuals(model, [len(blocks) - 1]) as rec:
        logits = model(input_ids=ids).logits
        lens = unembedding(model)(final_norm(model)(rec[len(blocks) - 1][0]))
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:  # Gemma 2 caps its logits after the unembedding
        lens = torch.tanh(lens / cap) * cap
    assert torch.allclose(lens, logits, atol=1e-5)


def test_a_model_without_the_parts_is_refused_by_name() -> None:
    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.ModuleList([nn.Linear(4, 4)])

    with pytest.raises(TypeError, match="Encoder: cannot find its decoder layers"):
        decoder_layers(Encoder())
    with pytest.raises(TypeError, match="Encoder: cannot find its final norm"):
        final_norm(Encoder())
    with pytest.raises(TypeError, match="Encoder: cannot find its unembedding"):
        unembedding(Encoder())
