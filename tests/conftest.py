"""Shared fixtures: a tiny random-weight Llama with a word-level tokenizer (fast, exact), and the real default model.

The tiny model is built in memory from a fixed seed: no files, no network. Tests on the real model are marked
`slow`; they need `steerwarm model prepare` (the README test command runs it first).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from steerwarm.model.load import LoadedModel, fingerprint
from steerwarm.paths import shared_data
from steerwarm.steer.vector import Provenance, SteeringVector

SHARED_DATA = shared_data()
WORDS = (
    "the a an and or but i you we it is are was be to of in on for with my your this that what how why "
    "hello sorry glad happy sad tea cup water make exam failed feel stupid friend kind warm cold quick "
    "answer question help please thanks yes no good bad day night time people world think know want "
    "system user assistant helpful model . , ! ? : 1 2 3 4 5 6 7 8 9 0"
).split()
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + ' ' + m['content'] + ' <|im_end|> ' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant ' }}{% endif %}"
)


def make_tokenizer(*, bench: bool = False) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over WORDS with ChatML-like specials. `bench`: also lowercase and split punctuation
    (benchmark prompts are sentences) and mark <|im_start|> as special; the ids are the same either way."""
    specials = ["<unk>", "<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    vocab = {w: i for i, w in enumerate(specials + WORDS)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    if bench:
        tk.normalizer = normalizers.Lowercase()
        tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    else:
        tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece(prefix="##")
    extra = {"additional_special_tokens": ["<|im_start|>"]} if bench else {}
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                  eos_token="<|im_end|>", **extra)
    tok.chat_template = CHAT_TEMPLATE
    tok.padding_side = "left"
    return tok


def loaded(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, name: str) -> LoadedModel:
    return LoadedModel(model=model, tokenizer=tokenizer, name=name, path=Path("."), fingerprint=fingerprint(model))


def make_tiny_model(seed: int = 0, layers: int = 3, dtype: torch.dtype = torch.float32) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    tok = make_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).to(dtype)
    model.eval()
    return model


@pytest.fixture()
def tiny() -> LoadedModel:
    return loaded(make_tiny_model(), make_tokenizer(), "tiny")


def random_vector(loaded: LoadedModel, layers: list[int] | None = None, seed: int = 1,
                  name: str = "rand") -> SteeringVector:
    g = torch.Generator().manual_seed(seed)
    n = loaded.num_layers
    layers = layers if layers is not None else list(range(n))
    diffs = {layer: torch.randn(loaded.hidden_size, generator=g) for layer in range(n)}
    norms = {layer: 1.0 + 0.5 * layer for layer in range(n)}
    return SteeringVector.from_differences(diffs, norms, model_fingerprint=loaded.fingerprint,
                                           model_name=loaded.name, provenance=Provenance(method="test"),
                                           name=name, layers=layers)


@pytest.fixture(scope="session")
def real() -> Iterator[LoadedModel]:
    from steerwarm.model.load import ModelNotFoundError, load

    try:
        yield load()
    except ModelNotFoundError as exc:  # pragma: no cover - the README test command prepares the model first
        pytest.fail(f"default model not prepared: {exc}")



from tests.families import FAMILIES, family_model  # noqa: E402  (it builds on the helpers above)


@pytest.fixture(params=list(FAMILIES))
def family(request: pytest.FixtureRequest) -> LoadedModel:
    """A tiny random model of each decoder-only family of the architecture matrix (tests/families.py)."""
    return family_model(str(request.param))
