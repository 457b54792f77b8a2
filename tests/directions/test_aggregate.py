"""Contrast extraction on the tiny model: which tokens count, and the mean-difference arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from steerwarm.directions.activations import TextItem, read_texts, response_activations
from steerwarm.directions.aggregate import contrast_vector
from steerwarm.model.chat import chat_text
from steerwarm.model.load import LoadedModel


def _manual_item_acts(tiny: LoadedModel, item: TextItem) -> dict[int, torch.Tensor]:
    tok = tiny.tokenizer
    if item.prompt is None:
        ids = tok(item.text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        first = 1
    else:
        prefix = chat_text(tiny, [{"role": "user", "content": item.prompt}])
        first = len(tok(prefix, add_special_tokens=False)["input_ids"])
        ids = tok(prefix + item.text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hs = tiny.model(input_ids=ids, output_hidden_states=True).hidden_states
    # hidden_states[L + 1] is the output of layer L, except the last, which is after the final norm.
    return {layer: hs[layer + 1][0, first:] for layer in range(tiny.num_layers - 1)}


def test_response_activations_skip_prompt_padding_and_position_zero(tiny: LoadedModel) -> None:
    items = [TextItem("you are kind and good", prompt="i feel sad"), TextItem("hello world"),
             TextItem("the answer is 4 .", prompt="what is 2 and 2 ?")]
    layers = list(range(tiny.num_layers - 1))
    got = list(response_activations(tiny, items, layers, batch_size=2))
    for item, acts in zip(items, got, strict=True):
        want = _manual_item_acts(tiny, item)
        for layer in layers:
            assert acts[layer].shape == want[layer].shape
            assert torch.allclose(acts[layer], want[layer], atol=1e-5)


def test_contrast_is_mean_of_item_means_difference(family: LoadedModel) -> None:
    tiny = family  # every family of the architecture matrix
    pos = [TextItem("glad happy warm friend"), TextItem("kind and warm and glad day")]
    neg = [TextItem("cold quick answer"), TextItem("no . bad cold time")]
    vec = contrast_vector(tiny, pos, neg, layers=[0, 1], default_layers=[1])
    for layer in (0, 1):
        means = {}
        for side, items in (("pos", pos), ("neg", neg)):
            acts = [_manual_item_acts(tiny, it)[layer] for it in items]
            means[side] = torch.stack([a.mean(0) for a in acts]).mean(0)
        diff = means["pos"] - means["neg"]
        assert torch.allclose(vec.directions[layer], diff / diff.norm(), atol=1e-5)
        all_norms = torch.cat([_manual_item_acts(tiny, it)[layer].norm(dim=-1) for it in pos + neg])
        assert vec.norms[layer] == pytest.approx(float(all_norms.median()), rel=1e-5)
    assert vec.layers == [1]
    assert vec.provenance.method == "contrast-mean-diff" and len(vec.provenance.data_hash) == 16


def test_read_texts_formats_and_errors(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("first line\n\nsecond\\nwith newline\n")
    assert read_texts(tmp_path / "a.txt") == [TextItem("first line"), TextItem("second\nwith newline")]
    (tmp_path / "b.jsonl").write_text('{"text": "x", "prompt": "p"}\n{"nope": 1}\n')
    with pytest.raises(ValueError, match=r"b.jsonl:2"):
        read_texts(tmp_path / "b.jsonl")
    (tmp_path / "c.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="no texts"):
        read_texts(tmp_path / "c.txt")


def test_contrast_recovers_a_planted_direction(family: LoadedModel) -> None:
    """Rows whose text has the marker word get `8 x norm x v` added at layer 1 (a hook keyed on the input ids): the
    contrast of marked against unmarked texts points along v at layer 1, in every family of the matrix."""
    from steerwarm.model.anatomy import backbone, decoder_layers, hidden_of, replace_hidden

    model, tok = family.model, family.tokenizer
    marker = tok.convert_tokens_to_ids("warm")
    truth = torch.nn.functional.normalize(torch.randn(family.hidden_size, generator=torch.Generator().manual_seed(3)),
                                          dim=0)
    marked: list[torch.Tensor] = []

    def see_ids(_m: torch.nn.Module, args: tuple[torch.Tensor, ...], kwargs: dict[str, torch.Tensor]) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)  # GPT-2 and GPT-NeoX pass it positionally
        assert ids is not None
        marked[:] = [(ids == marker).any(dim=1)]

    def plant(_m: torch.nn.Module, _a: tuple[object, ...], out: torch.Tensor) -> object:
        h = hidden_of(out)
        return replace_hidden(out, h + 8.0 * h.norm(dim=-1).mean() * marked[0][:, None, None] * truth)

    texts = ["you are kind and good", "the answer is 4 .", "make a cup of tea with water", "hello , how are you ?"]
    handles = [backbone(model).register_forward_pre_hook(see_ids, with_kwargs=True),
               decoder_layers(model)[1].register_forward_hook(plant)]
    try:
        vec = contrast_vector(family, [TextItem("hello warm " + t) for t in texts],
                              [TextItem("hello cold " + t) for t in texts], layers=[0, 1])
    finally:
        for h in handles:
            h.remove()
    assert float(vec.directions[1] @ truth) > 0.95
    assert abs(float(vec.directions[0] @ truth)) < 0.5  # before the planted layer: only the marker words differ
