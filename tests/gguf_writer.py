"""Write a Hugging Face causal LM to a GGUF file the way llama.cpp's converter lays one out, for round-trip tests.

Invariants:
- Exact: every tensor is written as F32, and the only arithmetic is what llama.cpp's converter does and
  transformers' GGUF loader undoes (q/k row permutation for llama-style rope, `+1` on Gemma norms, the transpose of
  GPT-2's Conv1D weights), so a loader that reverses it reproduces the weights bit for bit, given Gemma norm weights
  exactly representable after `+1 - 1` (see `exact_gemma_norms`).
- Tensor names come from the `gguf` package's own maps (`gguf.get_tensor_name_map`), metadata keys from transformers'
  GGUF config mapping (the keys its loader reads, reversed), so the file says what a real converted file says.
- The tokenizer is a byte-level ("gpt2") vocabulary of exactly the model's vocab size, with its special ids and the
  chat template; it only has to rebuild, the tests compare logits by token id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from torch import nn
from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

# HF model_type -> GGUF architecture. llama.cpp writes Mistral as "llama" (transformers reads it back as Llama: it
# would take the file for Mistral only under the exact name "mistral", which gguf 0.19 then fails to map).
GGUF_ARCH = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma2": "gemma2",
             "gemma3_text": "gemma3", "phi3": "phi3", "olmo2": "olmo2", "gpt_neox": "gptneox", "gpt2": "gpt2"}
PERMUTED_QK = ("llama",)  # llama.cpp permutes q/k rows for these GGUF architectures (interleaved rope)
GEMMA_NORM_SHIFT = ("gemma2", "gemma3")  # stored as 1 + w
GPT2_TRANSPOSED = ("attn_qkv", "attn_output", "ffn_up", "ffn_down")  # Conv1D weights are stored (out, in)


def _permute_qk(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's `LlamaModel.permute`: rotate-half rope pairs become interleaved pairs, head by head."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _config_value(config: Any, attr: str) -> Any:
    if attr == "rope_theta":
        rope = getattr(config, "rope_parameters", None) or {}
        rope = rope.get("full_attention", rope)  # per-layer-type parameters (Gemma 3): the global layers' base
        return rope.get("rope_theta", getattr(config, "rope_theta", None))
    if attr == "n_ctx":
        return getattr(config, "n_positions", None)
    if attr == "feed_forward_length":
        return getattr(config, "n_inner", None) or getattr(config, "intermediate_size", None)
    return getattr(config, attr, None)


def _write_metadata(writer: gguf.GGUFWriter, arch: str, config: Any) -> None:
    # An architecture transformers cannot read has no mapping; llama's keys are the common core of every decoder.
    for key, attr in GGUF_CONFIG_MAPPING.get(arch, GGUF_CONFIG_MAPPING["llama"]).items():
        value = _config_value(config, attr) if attr else None
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int):
            writer.add_uint32(f"{arch}.{key}", value)
        elif isinstance(value, float):
            writer.add_float32(f"{arch}.{key}", value)


def _write_tokenizer(writer: gguf.GGUFWriter, tokenizer: Any, vocab_size: int) -> None:
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    tokens = [by_id.get(i, f"<unused{i}>") for i in range(vocab_size)]
    special = set(tokenizer.all_special_tokens)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens])
    writer.add_token_scores([0.0] * vocab_size)
    writer.add_token_merges([])
    for setter, token_id in ((writer.add_bos_token_id, tokenizer.bos_token_id),
                             (writer.add_eos_token_id, tokenizer.eos_token_id),
                             (writer.add_pad_token_id, tokenizer.pad_token_id),
                             (writer.add_unk_token_id, tokenizer.unk_token_id)):
        if token_id is not None:
            setter(int(token_id))
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def exact_gemma_norms(model: nn.Module, seed: int = 0) -> None:
    """Give a Gemma model's (zero-initialised) norm weights random values on a 2**-10 grid: nonzero, so the `+1`
    offset is exercised, and exact in float32 after `+1 - 1`."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.randint(-64, 64, p.shape, generator=gen).float() / 1024)


def write_gguf(model: nn.Module, tokenizer: Any, path: Path) -> Path:
    """Write `model` (a transformers causal LM of a GGUF_ARCH family) and `tokenizer` to `path` as an F32 GGUF."""
    config = model.config  # type: ignore[union-attr]
    model_type = str(config.model_type)
    arch = GGUF_ARCH[model_type]
    name_map = gguf.get_tensor_name_map(_model_arch(arch), int(config.num_hidden_layers))
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(f"tiny-{model_type}")  # a Mistral file as llama.cpp writes one: architecture llama
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    _write_metadata(writer, arch, config)
    _write_tokenizer(writer, tokenizer, int(config.vocab_size))
    heads = int(getattr(config, "num_attention_heads", 0) or 0)
    kv_heads = int(getattr(config, "num_key_value_heads", heads) or heads)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue
        base, _, suffix = hf_name.rpartition(".")
        gguf_base = name_map.get_name(base)
        if gguf_base is None:
            raise KeyError(f"gguf has no {arch} tensor name for {hf_name}")
        data = tensor.detach().float().cpu().numpy().copy()
        if arch in PERMUTED_QK and suffix == "weight" and gguf_base.endswith((".attn_q", ".attn_k")):
            data = _permute_qk(data, heads if gguf_base.endswith(".attn_q") else kv_heads)
        if arch in GEMMA_NORM_SHIFT and gguf_base.endswith("norm") and suffix == "weight":
            data = data + np.float32(1.0)
        if arch == "gpt2" and suffix == "weight" and gguf_base.rpartition(".")[2] in GPT2_TRANSPOSED:
            data = np.ascontiguousarray(data.T)
        writer.add_tensor(f"{gguf_base}.{suffix}", data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _model_arch(arch: str) -> gguf.MODEL_ARCH:
    return next(key for key, value in gguf.MODEL_ARCH_NAMES.items() if value == arch)
