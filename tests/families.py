"""Tiny random-weight models of every decoder-only family steerwarm covers, built offline from transformers configs.

Each builder makes a 3-layer model over the word-level test tokenizer in a fraction of a second. Families with
sliding-window or hybrid attention get a window of WINDOW tokens, so tests with prompts longer than 2 * WINDOW
really cut the window.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import transformers as tf
from torch import nn

from steerwarm.model.load import LoadedModel

WINDOW = 4
HYBRID = ["sliding_attention", "sliding_attention", "full_attention"]


def _common() -> dict[str, Any]:
    from tests.conftest import make_tokenizer  # conftest imports this module: import it when building

    tok = make_tokenizer()
    return dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)


def _llama() -> nn.Module:
    return tf.LlamaForCausalLM(tf.LlamaConfig(**_common()))


def _mistral() -> nn.Module:
    return tf.MistralForCausalLM(tf.MistralConfig(**_common(), sliding_window=WINDOW))


def _qwen2() -> nn.Module:
    return tf.Qwen2ForCausalLM(tf.Qwen2Config(**_common(), use_sliding_window=True, sliding_window=WINDOW,
                                              layer_types=["sliding_attention", "full_attention",
                                                           "sliding_attention"]))


def _qwen3() -> nn.Module:
    return tf.Qwen3ForCausalLM(tf.Qwen3Config(**_common(), head_dim=16))


def _gemma2() -> nn.Module:
    return tf.Gemma2ForCausalLM(tf.Gemma2Config(**_common(), head_dim=16, sliding_window=WINDOW,
                                                attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                                                attn_implementation="eager"))


def _gemma3() -> nn.Module:
    return tf.Gemma3ForCausalLM(tf.Gemma3TextConfig(**_common(), head_dim=16, sliding_window=WINDOW,
                                                    layer_types=HYBRID))


def _phi3() -> nn.Module:
    return tf.Phi3ForCausalLM(tf.Phi3Config(**_common(), sliding_window=WINDOW))


def _olmo2() -> nn.Module:
    return tf.Olmo2ForCausalLM(tf.Olmo2Config(**_common()))


def _gpt_neox() -> nn.Module:
    c = _common()
    return tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(
        vocab_size=c["vocab_size"], hidden_size=64, intermediate_size=128, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=256, rotary_pct=0.5, pad_token_id=c["pad_token_id"],
        bos_token_id=c["bos_token_id"], eos_token_id=c["eos_token_id"]))


def _gpt2() -> nn.Module:
    c = _common()
    return tf.GPT2LMHeadModel(tf.GPT2Config(
        vocab_size=c["vocab_size"], n_embd=64, n_inner=128, n_layer=3, n_head=4, n_positions=256,
        pad_token_id=c["pad_token_id"], bos_token_id=c["bos_token_id"], eos_token_id=c["eos_token_id"]))


FAMILIES: dict[str, Callable[[], nn.Module]] = {
    "llama": _llama, "mistral": _mistral, "qwen2": _qwen2, "qwen3": _qwen3, "gemma2": _gemma2, "gemma3": _gemma3,
    "phi3": _phi3, "olmo2": _olmo2, "gpt_neox": _gpt_neox, "gpt2": _gpt2,
}
SLIDING = ("mistral", "qwen2", "gemma2", "gemma3", "phi3")


def family_model(family: str, seed: int = 0) -> LoadedModel:
    """A tiny random model of `family` (a FAMILIES key) in eval mode, with the test tokenizer."""
    from tests.conftest import loaded, make_tokenizer

    torch.manual_seed(seed)
    net = FAMILIES[family]().eval()
    return loaded(net, make_tokenizer(), f"tiny-{family}")
