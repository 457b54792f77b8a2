"""Fixtures of the benchmark tests (tests/bench_fixtures.py), and a calibrated dial for the tiny model."""

from pathlib import Path

from steerwarm.model.load import LoadedModel
from steerwarm.steer.vector import Calibration
from tests.bench_fixtures import btiny, fake_server, one_thread, tiny_folder, tiny_items  # noqa: F401
from tests.conftest import random_vector


def write_dial(vdir: Path, model: LoadedModel, *, cold_layer: int, cold_coef: float) -> Path:
    """A calibrated warm (layer 1, warmth +1 = coefficient 1.5) and cold (`cold_layer`, -1 = `cold_coef`) pair."""
    for name, layer, coef, seed in (("warm", 1, 1.5, 5), ("cold", cold_layer, cold_coef, 6)):
        vec = random_vector(model, [layer], seed=seed, name=name)
        vec.calibration = Calibration(dial=[0.0, 1.0], coef=[0.0, coef])
        vec.save(vdir / f"{name}.safetensors")
    return vdir
