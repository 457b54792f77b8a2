"""Anatomy of a decoder-only causal LM: where its decoder blocks and its backbone are, and what a block returns.

Invariants:
- `decoder_layers(model)` is the ordered list of blocks whose outputs are the residual stream after layer L
  (0-based); steering, recording and the serving engine all hook exactly these modules.
- `hidden_of` reads the residual stream out of a block's output whatever the transformers version returns
  (5.x: a tensor; older: a tuple whose first item it is), and `replace_hidden` writes it back in the same form.
- An architecture whose blocks cannot be found is a `TypeError` naming the model class.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks of a causal LM (Llama/Mistral/Qwen style, GPT-2, GPT-NeoX)."""
    for path in ("model.layers", "transformer.h", "gpt_neox.layers", "layers"):
        obj: Any = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList):
            return obj
    raise TypeError(f"cannot find decoder layers in {type(model).__name__}")


def backbone(model: nn.Module) -> nn.Module:
    for name in ("model", "transformer", "gpt_neox"):
        sub = getattr(model, name, None)
        if isinstance(sub, nn.Module):
            return sub
    return model


def hidden_of(output: Any) -> torch.Tensor:
    # transformers 5.x decoder layers return a tensor; older versions return a tuple whose first item it is.
    return output if isinstance(output, torch.Tensor) else output[0]


def replace_hidden(output: Any, hidden: torch.Tensor) -> Any:
    if isinstance(output, torch.Tensor):
        return hidden
    return (hidden, *output[1:])
