"""Model-diff extraction recovers a known shift: the fine-tune is the base plus a vector added at one layer."""

from __future__ import annotations

import copy

import pytest
import torch

from steerwarm.directions.activations import TextItem
from steerwarm.directions.aggregate import aggregate, finetune_vector
from steerwarm.model.load import LoadedModel
from steerwarm.steer.hooks import Steering, SteerSpec
from tests.conftest import random_vector

ITEMS = [TextItem("you are kind and good", prompt="i feel sad"), TextItem("the answer is 4 .", prompt="what is it ?"),
         TextItem("hello world , how are you today ?"), TextItem("make a cup of tea with water", prompt="how ?")]


def _shifted(tiny: LoadedModel, layer: int, coef: float) -> tuple[LoadedModel, torch.Tensor]:
    model = copy.deepcopy(tiny.model)
    vec = random_vector(tiny, [layer], seed=7)
    Steering(model, [SteerSpec(vec, coef)], check_fingerprint=False).__enter__()  # a permanent shift
    finetuned = LoadedModel(model, tiny.tokenizer, "tiny-shifted", tiny.path, "finetuned-fp")
    return finetuned, vec.directions[layer]


@pytest.mark.parametrize("method", ["mean", "pca"])
def test_recovers_a_known_shift(family: LoadedModel, method: str) -> None:
    tiny = family  # every family of the architecture matrix
    finetuned, truth = _shifted(tiny, layer=1, coef=0.8)
    vec = finetune_vector(tiny, finetuned, ITEMS, method=method, layers=[1, 2], default_layers=[1])
    assert float(vec.directions[1] @ truth) > 0.99
    # downstream the residual stream carries the shift on, turned by the next block: a little in pre-norm families
    # (cos > 0.9 for Llama), more where norms sit on the sublayer outputs (OLMo 2: 0.41, Gemma 2: 0.84)
    assert float(vec.directions[1] @ truth) > float(vec.directions[2] @ truth) > 0.3
    with pytest.raises(ValueError, match="layer 0"):  # before the shift there is no difference to point along
        finetune_vector(tiny, finetuned, ITEMS, method=method, layers=[0])
    assert vec.model_fingerprint == tiny.fingerprint and vec.provenance.method == f"finetune-diff-{method}"


def test_probe_points_along_the_shift(tiny: LoadedModel) -> None:
    finetuned, truth = _shifted(tiny, layer=1, coef=0.8)
    vec = finetune_vector(tiny, finetuned, ITEMS, method="probe", layers=[1])
    assert float(vec.directions[1] @ truth) > 0.5


def test_aggregate_rejects_unknown_method() -> None:
    with pytest.raises(ValueError, match="unknown aggregator"):
        aggregate(torch.zeros(2, 3), torch.ones(2, 3), "median")
