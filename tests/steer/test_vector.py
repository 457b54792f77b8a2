"""SteeringVector: validation, calibration, safetensors and llama.cpp GGUF round trips."""

from __future__ import annotations

import itertools
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from steerwarm.model.load import LoadedModel
from steerwarm.steer.vector import Calibration, SteeringVector
from tests.conftest import random_vector


def _same(a: SteeringVector, b: SteeringVector) -> None:
    assert a.directions.keys() == b.directions.keys()
    for k in a.directions:
        assert torch.equal(a.directions[k], b.directions[k])
    assert a.metadata() == b.metadata()


def test_directions_are_unit_and_raw_norms_kept(tiny: LoadedModel) -> None:
    vec = random_vector(tiny)
    for k, d in vec.directions.items():
        assert abs(float(d.norm()) - 1.0) < 1e-6
        assert vec.extra["raw_diff_norm"][str(k)] > 0
    assert torch.equal(vec.delta(2, 0.5), 0.5 * vec.norms[2] * vec.directions[2])


def test_safetensors_round_trip_is_exact(tiny: LoadedModel, tmp_path: Path) -> None:
    vec = random_vector(tiny, layers=[1, 2])
    vec.calibration = Calibration(dial=[-1.0, 0.0, 1.0], coef=[-0.4, 0.0, 0.3], curve=[{"dial": 1.0, "warmth": 0.2}])
    back = SteeringVector.load(vec.save(tmp_path / "v.safetensors"))
    _same(vec, back)
    assert back.calibration is not None and back.calibration.coef_for(0.5) == pytest.approx(0.15)


def test_gguf_round_trip_is_exact_and_follows_llama_cpp_layout(tiny: LoadedModel, tmp_path: Path) -> None:
    vec = random_vector(tiny, layers=[1])
    del vec.directions[0], vec.norms[0]
    path = vec.to_gguf(tmp_path / "v.gguf", coef=0.25)
    reader = gguf.GGUFReader(str(path))
    names = sorted(t.name for t in reader.tensors)
    assert names == ["direction.1", "direction.2"]  # direction.N is added to the output of layer N
    t1 = next(t for t in reader.tensors if t.name == "direction.1")
    assert np.allclose(np.array(t1.data).reshape(-1), vec.delta(1, 0.25).numpy(), rtol=0, atol=0)
    assert bytes(reader.fields["general.architecture"].parts[-1]).decode() == "controlvector"
    _same(vec, SteeringVector.load(path))


def test_gguf_export_refuses_layer_zero_and_zero_coef(tiny: LoadedModel, tmp_path: Path) -> None:
    vec = random_vector(tiny)
    with pytest.raises(ValueError, match="layer 0"):
        vec.to_gguf(tmp_path / "v.gguf")
    del vec.directions[0], vec.norms[0]
    vec.layers = [1]
    with pytest.raises(ValueError, match="non-zero"):
        vec.to_gguf(tmp_path / "v.gguf", coef=0.0)


def test_foreign_gguf_import_keeps_magnitudes(tmp_path: Path) -> None:
    path = tmp_path / "foreign.gguf"
    w = gguf.GGUFWriter(str(path), "controlvector")
    w.add_string("controlvector.model_hint", "llama")
    w.add_uint32("controlvector.layer_count", 2)
    a = np.arange(1, 9, dtype=np.float32)
    w.add_tensor("direction.3", a)
    w.add_tensor("direction.4", -2 * a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    vec = SteeringVector.from_gguf(path, model_fingerprint="fp", model_name="m")
    assert sorted(vec.directions) == [3, 4]
    assert torch.allclose(vec.delta(3, 1.0), torch.from_numpy(a))
    assert torch.allclose(vec.delta(4, 1.0), torch.from_numpy(-2 * a))


def test_calibration_is_piecewise_linear_and_monotone() -> None:
    cal = Calibration(dial=[-1.0, 0.0, 1.0], coef=[-0.5, 0.0, 0.2])
    assert cal.coef_for(0.0) == 0.0
    assert cal.coef_for(1.0) == pytest.approx(0.2)
    assert cal.coef_for(-0.5) == pytest.approx(-0.25)
    assert cal.coef_for(2.0) == pytest.approx(0.4)  # extrapolates the last segment
    assert cal.coef_for(-2.0) == pytest.approx(-1.0)
    values = [cal.coef_for(x / 10) for x in range(-30, 31)]
    assert all(b > a for a, b in itertools.pairwise(values))
    with pytest.raises(ValueError, match="increasing"):
        Calibration(dial=[0.0, 1.0], coef=[0.3, 0.1])


def test_invalid_vectors_are_refused(tiny: LoadedModel, tmp_path: Path) -> None:
    vec = random_vector(tiny)
    with pytest.raises(ValueError, match="same layers"):
        SteeringVector(dict(vec.directions), {0: 1.0}, "fp", "m", vec.provenance)
    with pytest.raises(ValueError, match="zero"):
        SteeringVector.from_differences({0: torch.zeros(4)}, {0: 1.0}, model_fingerprint="f", model_name="m",
                                        provenance=vec.provenance)
    with pytest.raises(FileNotFoundError):
        SteeringVector.load(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="no direction"):
        SteeringVector(dict(vec.directions), dict(vec.norms), "fp", "m", vec.provenance, layers=[9])
