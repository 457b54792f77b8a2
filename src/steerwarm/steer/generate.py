"""Batched chat generation with a steering coefficient per row, for the CLI, benchmarks and tests.

Invariants:
- Prompts are chat-templated by the model's own template (with its default system prompt unless one is given) and
  left-padded, so every row's continuation starts at the same column and padding is never steered.
- Greedy decoding (temperature 0) is deterministic; sampling is reproducible from `seed`.
- Steering is active only inside the call; the model is left without hooks afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from steerwarm.model.device import input_device
from steerwarm.model.load import LoadedModel
from steerwarm.steer.hooks import SteerSpec, steer
from steerwarm.steer.vector import SteeringVector


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None


def generate_texts(
    loaded: LoadedModel,
    prompts: Sequence[str],
    *,
    vector: SteeringVector | None = None,
    coefs: Sequence[float] | None = None,
    layers: Sequence[int] | None = None,
    specs: Sequence[SteerSpec] = (),
    config: GenerationConfig = GenerationConfig(),
) -> list[str]:
    """Generate one completion per already-templated prompt; row i is steered with raw coefficient coefs[i] of
    `vector`, and/or by any further `specs` (e.g. `Dial.specs(warmths)`, one warmth per row)."""
    tok, model = loaded.tokenizer, loaded.model
    enc = tok(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False).to(input_device(model))
    kwargs: dict[str, object] = {
        "max_new_tokens": config.max_new_tokens,
        "pad_token_id": tok.pad_token_id,
        "eos_token_id": tok.eos_token_id,
    }
    if config.temperature > 0:
        kwargs.update(do_sample=True, temperature=config.temperature, top_p=config.top_p)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    if config.seed is not None:
        torch.manual_seed(config.seed)
    all_specs = list(specs)
    if vector is not None:
        if coefs is None or len(coefs) != len(prompts):
            raise ValueError("give one coefficient per prompt when steering")
        all_specs.append(SteerSpec(vector, list(coefs), layers))
    with torch.inference_mode(), steer(model, all_specs):
        out = model.generate(**enc, **kwargs)  # type: ignore[operator]
    new = out[:, enc["input_ids"].shape[1]:]
    return [str(tok.decode(row, skip_special_tokens=True)) for row in new.cpu()]
