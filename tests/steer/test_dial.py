"""The warmth dial on the tiny model: zero is the base model, signs pick vectors, mixed rows share one pass."""

from __future__ import annotations

import pytest
import torch

from steerwarm.model.load import LoadedModel
from steerwarm.steer.dial import Dial
from steerwarm.steer.hooks import steer
from steerwarm.steer.vector import Calibration
from tests.conftest import random_vector


def _dial(tiny: LoadedModel) -> Dial:
    warm, cold = random_vector(tiny, [1], seed=1, name="warm"), random_vector(tiny, [1], seed=2, name="cold")
    warm.calibration = Calibration(dial=[0.0, 1.0, 2.0], coef=[0.0, 0.3, 0.5])
    cold.calibration = Calibration(dial=[0.0, 1.0], coef=[0.0, 0.4])
    return Dial(warm, cold)


def test_coefficients_follow_calibrations(tiny: LoadedModel) -> None:
    dial = _dial(tiny)
    assert dial.coefficients(0.0) == (0.0, 0.0)
    assert dial.coefficients(1.0) == pytest.approx((0.3, 0.0))
    assert dial.coefficients(1.5) == pytest.approx((0.4, 0.0))
    assert dial.coefficients(-0.5) == pytest.approx((0.0, 0.2))
    assert dial.coefficients(-2.0) == pytest.approx((0.0, 0.8))  # extrapolated
    with pytest.raises(ValueError, match="within"):
        dial.coefficients(7.0)


def test_mixed_warmth_batch_equals_rows_run_alone(tiny: LoadedModel) -> None:
    dial = _dial(tiny)
    batch = dict(tiny.tokenizer(["i feel sad", "what is it", "make a cup"], return_tensors="pt",
                                add_special_tokens=False))
    warmths = [0.0, 1.0, -1.0]
    with torch.no_grad():
        plain = tiny.model(**batch).logits
        with steer(tiny.model, dial.specs(warmths)):
            mixed = tiny.model(**batch).logits
        for i, w in enumerate(warmths):
            with steer(tiny.model, dial.specs([w] * 3)):
                assert torch.equal(mixed[i], tiny.model(**batch).logits[i])
    assert torch.equal(mixed[0], plain[0])
    assert not torch.allclose(mixed[1], plain[1]) and not torch.allclose(mixed[2], plain[2])


def test_uncalibrated_vectors_are_refused(tiny: LoadedModel) -> None:
    with pytest.raises(ValueError, match="no dial calibration"):
        Dial(random_vector(tiny, [1]))
    bad = random_vector(tiny, [1])
    bad.calibration = Calibration(dial=[0.0, 1.0], coef=[0.1, 0.3])
    with pytest.raises(ValueError, match="warmth 0"):
        Dial(bad)
