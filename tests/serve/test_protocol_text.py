"""Request parsing (strict, unsupported parameters refused by name), the model-name warmth suffix, incremental
detokenization, stop sequences and token pieces."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from steerwarm.model.load import prepared_dir
from steerwarm.serve.errors import APIError
from steerwarm.serve.protocol import ChatCompletionRequest, CompletionRequest, split_model
from steerwarm.serve.server import parse as _parse
from steerwarm.serve.text import IncrementalDecoder, StopMatcher, TokenPieces

CHAT = '{"model": "m", "messages": [{"role": "user", "content": "hi"}]'


def _chat(extra: str = "") -> ChatCompletionRequest:
    return _parse(ChatCompletionRequest, (CHAT + extra + "}").encode())


def _error(body: str, model: type[ChatCompletionRequest] | type[CompletionRequest] = ChatCompletionRequest
           ) -> APIError:
    with pytest.raises(APIError) as info:
        _parse(model, body.encode())
    return info.value


def test_defaults_of_unsupported_parameters_are_accepted_and_other_values_refused() -> None:
    ok = _chat(', "presence_penalty": 0, "frequency_penalty": 0.0, "logit_bias": {}, "tools": [], '
               '"response_format": {"type": "text"}, "tool_choice": "none", "store": false, "n": 2, "seed": 1, '
               '"user": "u1", "warmth": 0.5, "steering": {"vector": "v", "coef": 0.2, "layers": [3]}')
    assert ok.n == 2 and ok.warmth == 0.5 and ok.steering_list()[0].layers == [3]
    for field, value in [("presence_penalty", "0.3"), ("logit_bias", '{"5": 1}'), ("tools", '[{"type": "x"}]'),
                         ("response_format", '{"type": "json_object"}'), ("tool_choice", '"required"'),
                         ("store", "true"), ("audio", '{"voice": "a"}')]:
        err = _error(CHAT + f', "{field}": {value}' + "}")
        assert (err.status, err.param, err.code) == (400, field, "unsupported_parameter")
        assert field in err.message and "not supported" in err.message
    err = _error('{"model": "m", "messages": [{"role": "user", "content": "hi", "name": "ann"}]}')
    assert (err.param, err.code) == ("messages[0].name", "unsupported_parameter")
    err = _error('{"model": "m", "prompt": "x", "suffix": "end"}', CompletionRequest)
    assert (err.param, err.code) == ("suffix", "unsupported_parameter")


def test_strict_types_unknown_fields_and_ranges() -> None:
    cases = [
        (', "temperature": "0.5"', "temperature", "invalid_type"),
        (', "n": 1.5', "n", "invalid_type"),
        (', "stream": "yes"', "stream", "invalid_type"),
        (', "temperature": 3', "temperature", "invalid_value"),
        (', "top_p": 0', "top_p", "invalid_value"),
        (', "stop": ""', "stop", "invalid_value"),
        (', "max_tokens": 0', None, "invalid_value"),
        (', "top_logprobs": 3', None, "invalid_value"),
        (', "stream_options": {"include_usage": true}', None, "invalid_value"),
        (', "steering": {"vector": "v", "coef": 99}', "steering.coef", "invalid_value"),
        (', "steering": {"vector": "v"}', "steering.coef", "missing_required_parameter"),
        (', "warmth": "warm"', "warmth", "invalid_type"),
        (', "best_of": 2', "best_of", "unknown_parameter"),  # a completions-only field on chat
        (', "mystery": 1', "mystery", "unknown_parameter"),
    ]
    for extra, param, code in cases:
        err = _error(CHAT + extra + "}")
        assert (err.status, err.param, err.code) == (400, param, code), (extra, err.message)
    assert _error("{").code == "invalid_json"
    assert _error("[]").message == "the request body must be a JSON object"
    assert _error('{"model": "m"}').param == "messages"


def test_model_suffix() -> None:
    assert split_model("smollm2-135m") == ("smollm2-135m", None)
    assert split_model("smollm2-135m@warmth=0.5") == ("smollm2-135m", 0.5)
    assert split_model("smollm2-135m@warmth=-1") == ("smollm2-135m", -1.0)
    for bad in ("m@warmth=hot", "m@temp=1", "m@warmth=nan", "m@warmth=1@warmth=2"):
        with pytest.raises(APIError) as info:
            split_model(bad)
        assert info.value.param == "model" and info.value.status == 400


def test_stop_matcher_finds_and_holds_back() -> None:
    m = StopMatcher(["END", "\n\n"])
    assert m.find("abc EN", 0) is None and m.holdback("abc EN") == 2
    assert m.find("abc END more", 4) == 4
    assert m.holdback("abc\n") == 1 and m.holdback("abc") == 0
    assert StopMatcher([]).holdback("x") == 0


@pytest.mark.slow
def test_incremental_decoding_matches_full_decoding_on_the_real_tokenizer() -> None:
    tok = AutoTokenizer.from_pretrained(str(prepared_dir()))
    text = "Café — naïve 👩‍🔬 test 漢字 ok.\n\n  Indented   spaces, and  émojis 🎉!"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    dec = IncrementalDecoder(tok, skip_special_tokens=True)
    deltas = [dec.push(i) for i in ids]
    assert all(not d.endswith("\ufffd") for d in deltas)
    assert "".join(deltas) + dec.flush() == tok.decode(ids) == text
    pieces = TokenPieces(tok)
    raw = b"".join(bytes(pieces.get(i)[1]) for i in ids)
    assert raw.decode("utf-8") == text  # token bytes concatenate to the text exactly
    partial = [i for i in ids if pieces.get(i)[0].startswith("bytes:")]
    assert partial, "the emoji should split into tokens that are not valid UTF-8 alone"
    assert "".join(pieces.get(i)[0] for i in ids[:3]).startswith("Caf")
