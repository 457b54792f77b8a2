"""`steerwarm vector provisional-dial`: a folder the server registers with the dial enabled, warmth 1 = the raw
coefficient along the source vector, -1 = the same along its negation; a bad --coef or a missing source is a one-line
error."""

from __future__ import annotations

from pathlib import Path

import torch
from typer.testing import CliRunner

from steerwarm.cli.app import app
from steerwarm.model.load import LoadedModel
from steerwarm.serve.registry import SteeringRegistry
from steerwarm.steer.vector import SteeringVector
from tests.conftest import random_vector


def test_provisional_dial_is_served_as_a_linear_dial(tiny: LoadedModel, tmp_path: Path) -> None:
    source = random_vector(tiny, [1], seed=3, name="probe").save(tmp_path / "probe.safetensors")
    out = tmp_path / "dial"
    res = CliRunner().invoke(app, ["vector", "provisional-dial", str(out), "--source", str(source), "--coef", "0.5"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["cold.safetensors", "probe.safetensors", "warm.safetensors"]
    registry = SteeringRegistry.from_dir(out, tiny)
    assert registry.dial is not None and sorted(registry.vectors) == ["cold", "probe", "warm"]
    up, down = registry.resolve(1.0, []), registry.resolve(-1.0, [])
    assert registry.applied(up) == [{"name": "warm", "layers": [1], "coef": 0.5, "source": "dial"}]
    assert [(t.vector, t.coef) for t, _ in registry.terms(down)] == [("cold", 0.5)]
    src, warm, cold = (SteeringVector.load(out / f"{n}.safetensors") for n in ("probe", "warm", "cold"))
    assert torch.equal(warm.directions[1], src.directions[1]) and torch.equal(cold.directions[1], -src.directions[1])
    assert warm.calibration is not None and "provisional" in warm.calibration.note


def test_bad_coef_and_missing_source_are_one_line_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["vector", "provisional-dial", str(tmp_path / "d"), "--coef", "0"])
    assert res.exit_code == 2 and "--coef must be positive" in res.output and not (tmp_path / "d").exists()
    res = runner.invoke(app, ["vector", "provisional-dial", str(tmp_path / "d"), "--source", str(tmp_path / "no")])
    assert res.exit_code == 2 and "Traceback" not in res.output and not (tmp_path / "d").exists()
