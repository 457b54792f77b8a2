"""continuation_logprobs against a direct, unbatched computation on the tiny model."""

from __future__ import annotations

import pytest
import torch

from steerwarm.model.load import LoadedModel
from steerwarm.model.logprobs import continuation_logprobs, mean_logprob


def _direct(tiny: LoadedModel, prefix: str, cont: str) -> torch.Tensor:
    tok = tiny.tokenizer
    pre = tok(prefix, add_special_tokens=False)["input_ids"]
    c = tok(cont, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([pre + c])
    with torch.no_grad():
        logp = torch.log_softmax(tiny.model(input_ids=ids).logits.float(), -1)[0]
    return torch.stack([logp[len(pre) + j - 1, t] for j, t in enumerate(c)])


def test_matches_direct_computation_across_batching(tiny: LoadedModel) -> None:
    prefixes = ["my friend said", "the answer is", "hello"]
    conts = ["you are kind and good", "4", "how are you today ?"]
    got = continuation_logprobs(tiny, prefixes, conts, batch_size=2)
    for p, c, g in zip(prefixes, conts, got, strict=True):
        want = _direct(tiny, p, c)
        assert g.shape == want.shape
        assert torch.allclose(g, want, atol=1e-5)
    assert mean_logprob(tiny, prefixes, conts)[1] == pytest.approx(float(got[1].mean()), abs=1e-6)


def test_rejects_mismatched_or_empty_input(tiny: LoadedModel) -> None:
    with pytest.raises(ValueError, match="one prefix"):
        continuation_logprobs(tiny, ["a"], ["b", "c"])
    with pytest.raises(ValueError, match="no tokens"):
        continuation_logprobs(tiny, ["hello"], [""])
