"""A tiny base model and a 'fine-tune' that is the base plus a known vector added at one layer, in memory or saved.

The MLPs carry biases (all zero in the base); the fine-tune copy sets the down-projection bias of one layer to the known
vector, so its residual after that layer is exactly the base's plus that vector at every position (the layers
before it are untouched), a planted shift that model-diff extraction must recover.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from steerwarm.corpus.validation import ValidationPrompt
from steerwarm.model.load import LoadedModel, fingerprint
from tests.conftest import make_tokenizer

PROMPTS = [ValidationPrompt(f"p{i}", "other", t) for i, t in enumerate(
    ["i feel sad today", "how do i make tea ?", "what is the answer ?", "hello , how are you ?",
     "i failed my exam", "why is it cold at night ?"])]


def bias_model(seed: int = 0, layers: int = 3) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    tok = make_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, mlp_bias=True,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.zero_()
    model.eval()
    return model


def planted(seed: int = 3, size: int = 64) -> torch.Tensor:
    return torch.randn(size, generator=torch.Generator().manual_seed(seed))


def shifted(model: LlamaForCausalLM, layer: int, delta: torch.Tensor) -> LlamaForCausalLM:
    finetuned = copy.deepcopy(model)
    with torch.no_grad():
        finetuned.model.layers[layer].mlp.down_proj.bias.copy_(delta)
    if hasattr(finetuned, "_steerwarm_fingerprint"):
        del finetuned._steerwarm_fingerprint
    return finetuned


def as_loaded(model: LlamaForCausalLM, name: str, path: Path = Path(".")) -> LoadedModel:
    return LoadedModel(model=model, tokenizer=make_tokenizer(), name=name, path=path, fingerprint=fingerprint(model))


def save(model: LlamaForCausalLM, path: Path) -> Path:
    model.save_pretrained(str(path))
    make_tokenizer().save_pretrained(str(path))
    return path
