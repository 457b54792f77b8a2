"""Rewriter inputs: ShareGPT JSON and JSONL, our corpus JSONL, plain chat JSONL; normalisation and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steerwarm.corpus.schema import CorpusError
from steerwarm.corpus.sources import Message, read_sources

from .helpers import conversation

SHAREGPT = [
    {"id": "sg1", "conversations": [{"from": "human", "value": "What is a haiku?"},
                                    {"from": "gpt", "value": "A three-line poem of 5, 7 and 5 syllables."}]},
    {"id": 7, "conversations": [{"from": "gpt", "value": "Hello! How can I help?"},  # leading reply dropped
                                {"from": "human", "value": "Name a prime."},
                                {"from": "human", "value": "A small one."},  # joined with the previous
                                {"from": "gpt", "value": "2 is the smallest prime."},
                                {"from": "human", "value": "Thanks"}]},  # trailing user message dropped
    {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Capital of Peru?"},
                       {"from": "chatgpt", "value": "Lima."}]},
    {"id": "empty", "conversations": [{"from": "human", "value": "Anyone there?"}]},
]


def test_sharegpt_json_is_normalised(tmp_path: Path) -> None:
    path = tmp_path / "sg.json"
    path.write_text(json.dumps(SHAREGPT))
    res = read_sources(path)
    assert [c.id for c in res.conversations] == ["sg1", "7", "sg-2"]
    assert res.conversations[1].messages == (Message("user", "Name a prime.\n\nA small one."),
                                             Message("assistant", "2 is the smallest prime."))
    assert res.conversations[2].messages[0] == Message("system", "Be brief.")
    assert res.conversations[2].replies == [2]
    assert res.skipped == [f"{path}[3]: empty: no user message followed by an assistant reply"]
    assert res.conversations[0].source == f"{path}[0]"


def test_jsonl_of_ours_plain_chat_and_sharegpt(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    lines = [conversation("ours", "factual", "train"),
             {"id": "plain", "messages": [{"role": "user", "content": "Hi?"},
                                          {"role": "assistant", "content": "Yes."}]},
             SHAREGPT[0]]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    convs = read_sources(path).conversations
    assert [c.id for c in convs] == ["ours", "plain", "sg1"]
    assert convs[0].messages[1].content == lines[0]["messages"][1]["neutral"]  # type: ignore[index]
    assert convs[1].messages[1] == Message("assistant", "Yes.")


@pytest.mark.parametrize(("records", "message"), [
    ([{"id": "a", "conversations": [{"from": "robot", "value": "x"}]}], "[0]: conversations[0]: field 'from' is"),
    ([{"id": "a", "conversations": [{"from": "human", "value": 3}]}], "[0]: conversations[0]: field 'value' must"),
    ([{"id": "a", "conversations": "nope"}], "[0]: field 'conversations' must be a list"),
    ([{"id": "a"}], "[0]: needs a 'conversations' (ShareGPT) or 'messages' field"),
    ([SHAREGPT[0], SHAREGPT[0]], "[1]: field 'id': duplicate id 'sg1' (first at"),
    (["text"], "[0]: expected a JSON object"),
])
def test_errors_name_file_record_and_field(tmp_path: Path, records: list[object], message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(records))
    with pytest.raises(CorpusError) as exc:
        read_sources(path)
    assert str(exc.value).startswith(str(path)) and message in str(exc.value)


def test_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(SHAREGPT[0]) + "\n{oops\n")
    with pytest.raises(CorpusError, match=r"bad.jsonl:2: invalid JSON"):
        read_sources(path)
