"""Anatomy of a decoder-only causal LM: where its decoder blocks and its backbone are, and what a block returns.

Invariants:
- `decoder_layers(model)` is the ordered list of blocks whose outputs are the residual stream after layer L
  (0-based); steering, recording and the serving engine all hook exactly these modules.
- `hidden_of` reads the residual stream out of a block's output whatever the transformers version returns
  (5.x: a tensor; older: a tuple whose first item it is), and `replace_hidden` writes it back in the same form.
- `final_norm(model)` and `unembedding(model)` are the norm after the last block and the output projection: the
  logit lens reads a direction through exactly these two.
- Covered generically (tests/families.py builds each): Llama, Mistral, Qwen2, Qwen3, Gemma 2, Gemma 3 text, Phi-3,
  OLMo 2, GPT-NeoX, GPT-2, and any decoder-only model that keeps the same attribute names. An architecture whose
  blocks, final norm or unembedding cannot be found is a `TypeError` naming the model class and the part missing.
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
    raise TypeError(f"{type(model).__name__}: cannot find its decoder layers (looked for model.layers, transformer.h, "
                    "gpt_neox.layers, layers); steerwarm steers decoder-only causal LMs")


def backbone(model: nn.Module) -> nn.Module:
    for name in ("model", "transformer", "gpt_neox"):
        sub = getattr(model, name, None)
        if isinstance(sub, nn.Module):
            return sub
    return model


FINAL_NORMS = ("norm", "ln_f", "final_layer_norm", "final_layernorm")


def final_norm(model: nn.Module) -> nn.Module:
    """The normalisation between the last decoder block and the unembedding."""
    trunk = backbone(model)
    for name in FINAL_NORMS:
        sub = getattr(trunk, name, None)
        if isinstance(sub, nn.Module):
            return sub
    raise TypeError(f"{type(model).__name__}: cannot find its final norm (looked for {', '.join(FINAL_NORMS)} on "
                    f"{type(trunk).__name__})")


def unembedding(model: nn.Module) -> nn.Module:
    """The output projection from the residual stream to vocabulary logits."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if not isinstance(head, nn.Module):
        raise TypeError(f"{type(model).__name__}: cannot find its unembedding (get_output_embeddings() gave "
                        f"{type(head).__name__})")
    return head


def hidden_of(output: Any) -> torch.Tensor:
    # transformers 5.x decoder layers return a tensor; older versions return a tuple whose first item it is.
    return output if isinstance(output, torch.Tensor) else output[0]


def replace_hidden(output: Any, hidden: torch.Tensor) -> Any:
    if isinstance(output, torch.Tensor):
        return hidden
    return (hidden, *output[1:])
