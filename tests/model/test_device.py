"""Device and dtype requests resolved against the devices that exist (simulated GPUs: torch's CUDA queries are
patched, nothing runs on them)."""

from __future__ import annotations

import pytest
import torch

from steerwarm.model.device import DeviceError, Placement, available_devices, placement, resolve_device


def _gpus(monkeypatch: pytest.MonkeyPatch, n: int, bf16: bool = True) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_the_cpu_is_the_default_and_the_environment_can_change_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 2)
    monkeypatch.delenv("STEERWARM_DEVICE", raising=False)
    assert placement() == Placement("cpu", "float32") and placement().load_kwargs() == {}
    monkeypatch.setenv("STEERWARM_DEVICE", "cuda:1")
    assert placement() == Placement("cuda:1", "float32")
    assert placement("cpu", "auto") == Placement("cpu", "float32")  # an explicit --device wins over the variable


def test_auto_picks_the_best_device_and_spreads_over_several_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 0)
    assert resolve_device("auto") == ("cpu", None)
    _gpus(monkeypatch, 1)
    assert placement("auto", "auto") == Placement("cuda:0", "bfloat16")
    assert placement("cuda", "auto").load_kwargs() == {"device_map": "cuda:0"}
    _gpus(monkeypatch, 4, bf16=False)
    where = placement("auto", "auto")
    assert where == Placement("cuda:0", "float16", "auto") and where.load_kwargs() == {"device_map": "auto"}
    assert available_devices() == ["cpu", "cuda:0", "cuda:1", "cuda:2", "cuda:3"]


def test_a_device_that_is_not_there_names_the_ones_that_are(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 2)
    with pytest.raises(DeviceError, match=r"device 'cuda:2' is not available here; available: cpu, cuda:0, cuda:1"):
        placement("cuda:2")
    with pytest.raises(DeviceError, match="device 'mps' is not available"):
        placement("mps")
    with pytest.raises(DeviceError, match="unknown device 'gpu'; choose auto, cpu, cuda, cuda:N or mps"):
        placement("gpu")
    with pytest.raises(DeviceError, match="dtype must be one of auto, float32, bfloat16, float16"):
        placement("cpu", "fp8")
