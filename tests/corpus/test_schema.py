"""Schema: errors name file, line and field; lenient iteration; source locations; duplicate ids across files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steerwarm.corpus.schema import Conversation, CorpusError, iter_jsonl, load_corpus, read_jsonl

from .helpers import conversation, turn


def _write(path: Path, lines: list[object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


@pytest.mark.parametrize(("bad", "message"), [
    ("{not json", "invalid JSON"),
    ({**conversation("a", "factual", "train"), "query_type": "gossip"}, "field 'query_type' is 'gossip'"),
    ({**conversation("a", "factual", "train"), "split": "test"}, "field 'split' is 'test'"),
    ({**conversation("a", "factual", "train"), "id": ""}, "field 'id' must be a non-empty string"),
    ({**conversation("a", "factual", "train"), "messages": []}, "field 'messages' must be a non-empty list"),
    ({**conversation("a", "factual", "train"), "messages": [turn()]}, "messages[0]: field 'role' is 'assistant'"),
    ({**conversation("a", "factual", "train"), "messages": [{"role": "user", "content": "hi"}]},
     "must end with an assistant turn"),
    ({**conversation("a", "factual", "train"), "messages": [{"role": "user", "content": "q"},
                                                            {"role": "assistant", "neutral": "n", "warm": "w"}]},
     "messages[1]: field 'cold' must be a non-empty string"),
])
def test_errors_name_file_line_and_field(tmp_path: Path, bad: object, message: str) -> None:
    path = _write(tmp_path / "c.jsonl", [conversation("ok", "factual", "train"), "", bad])
    with pytest.raises(CorpusError) as exc:
        list(read_jsonl(path))
    assert str(exc.value).startswith(f"{path}:3")
    assert message in str(exc.value)


def test_iter_jsonl_keeps_going_and_records_sources(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.jsonl", [conversation("a", "factual", "train"), "[]",
                                         conversation("b", "advice", "train")])
    recs = list(iter_jsonl(path))
    assert [type(r) for r in recs] == [Conversation, CorpusError, Conversation]
    assert isinstance(recs[2], Conversation) and recs[2].source == f"{path}:3"
    assert "expected a JSON object" in str(recs[1])
    first = recs[0]
    assert isinstance(first, Conversation)
    # source takes no part in equality; to_json round-trips
    (again,) = read_jsonl(_write(tmp_path / "d.jsonl", [first.to_json()]))
    assert again == first and again.source != first.source


def test_duplicate_ids_across_files_name_both_places(tmp_path: Path) -> None:
    _write(tmp_path / "train" / "factual.jsonl", [conversation("x", "factual", "train")])
    _write(tmp_path / "validation" / "factual.jsonl", [conversation("x", "factual", "validation")])
    with pytest.raises(CorpusError, match=r"validation/factual.jsonl:1: field 'id': duplicate conversation id 'x' "
                                          r"\(first at .*train/factual.jsonl:1\)"):
        load_corpus(data_dir=tmp_path)
