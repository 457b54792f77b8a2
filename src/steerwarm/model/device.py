"""Where a model runs and in what precision: `--device` and `--dtype` resolved against the devices that exist.

Invariants:
- The CPU is the default: without `--device` and without `STEERWARM_DEVICE`, every model loads on the CPU in float32,
  exactly as before devices existed.
- `auto` picks the best device present (CUDA, then Apple MPS, then CPU); with several CUDA devices it spreads the
  model over all of them (`device_map="auto"`), which is how a model larger than one GPU loads. A dtype of `auto` is
  bfloat16 on CUDA devices that support it (else float16), float16 on MPS, float32 on the CPU.
- A device that is not there is a `DeviceError` whose message names the devices that are; nothing is loaded.
- Tensors a caller builds for a model go to `input_device(model)`: the device of the input embeddings, which is the
  first device of a model spread over several (steering deltas follow each layer's own device by themselves).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

DEVICE_ENV = "STEERWARM_DEVICE"
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
DTYPES = ("auto", "float32", "bfloat16", "float16")


class DeviceError(ValueError):
    """A requested device or dtype cannot be used here; the message says what can."""


@dataclass(frozen=True)
class Placement:
    """A resolved device request: `device` for tensors and single-device models, `device_map` when the model is
    spread over several devices, and the torch dtype name."""

    device: str
    dtype: str
    device_map: str | None = None

    def load_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `from_pretrained`: weights go straight to their device; on the CPU none at all, so a
        CPU load is exactly what it was before devices existed."""
        if self.device_map:
            return {"device_map": self.device_map}
        return {} if self.device == "cpu" else {"device_map": self.device}


def available_devices() -> list[str]:
    """The devices torch can use here, e.g. ["cpu"] or ["cpu", "cuda:0", "cuda:1"]."""
    import torch

    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def _missing(spec: str, devices: list[str]) -> DeviceError:
    return DeviceError(f"device {spec!r} is not available here; available: {', '.join(devices)} "
                       f"(choose {DEVICE_CHOICES}, or set {DEVICE_ENV})")


def resolve_device(spec: str | None = None) -> tuple[str, str | None]:
    """(device, device_map) for a `--device` value; None means `STEERWARM_DEVICE`, or the CPU."""
    spec = (spec or os.environ.get(DEVICE_ENV) or "cpu").strip().lower()
    devices = available_devices()
    cuda = [d for d in devices if d.startswith("cuda:")]
    if spec == "auto":
        if len(cuda) > 1:
            return cuda[0], "auto"
        if cuda:
            return cuda[0], None
        return ("mps" if "mps" in devices else "cpu"), None
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", spec):
        raise DeviceError(f"unknown device {spec!r}; choose {DEVICE_CHOICES}")
    device = "cuda:0" if spec == "cuda" else spec
    if device not in devices:
        raise _missing(spec, devices)
    return device, None


def resolve_dtype(spec: str, device: str) -> str:
    """The dtype name for a `--dtype` value on `device` (see the module invariants for `auto`)."""
    import torch

    if spec not in DTYPES:
        raise DeviceError(f"dtype must be one of {', '.join(DTYPES)}, got {spec!r}")
    if spec != "auto":
        return spec
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float16" if device == "mps" else "float32"


def placement(device: str | None = None, dtype: str = "float32") -> Placement:
    """Resolve a device and a dtype request together."""
    dev, device_map = resolve_device(device)
    return Placement(dev, resolve_dtype(dtype, dev), device_map)


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a resolved dtype name (not `auto`)."""
    import torch

    types = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in types:
        raise DeviceError(f"dtype must be one of {', '.join(types)}, got {name!r}")
    return types[name]


def input_device(model: nn.Module) -> torch.device:
    """The device that input ids must be on: the input embeddings' (the first device of a spread model)."""
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    if emb is not None and getattr(emb, "weight", None) is not None:
        return emb.weight.device  # type: ignore[no-any-return]
    return next(model.parameters()).device
