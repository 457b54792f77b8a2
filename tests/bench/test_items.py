"""Item loaders: our default items, the paper's files, every format, MedQA re-phrasing, and malformed files that
must name the file, the line and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steerwarm.bench import TASKS
from steerwarm.bench.errors import DataFileError
from steerwarm.bench.items import load_items, swap_pivotal
from steerwarm.bench.medqa import relative_case, relatives_for, rephrase, rewrite_stem
from tests.conftest import SHARED_DATA

needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent")


@pytest.mark.parametrize("task", TASKS)
def test_default_items_load(task: str) -> None:
    s = load_items(task)
    assert len(s.items) == 64 and not s.skipped
    assert len({it.item_id for it in s.items}) == 64
    assert all(it.item_id.startswith(f"{task}:") for it in s.items)
    assert all(it.correct.casefold() != it.wrong.casefold() for it in s.items)
    if task == "medqa":
        assert all(it.question.startswith("My ") and it.wrong in it.options and it.correct in it.options
                   for it in s.items)


@needs_shared
def test_paper_files_load() -> None:
    trivia = load_items("trivia", SHARED_DATA / "triviaqa" / "warm_ai_trivia_items.jsonl")
    tqa = load_items("truthfulqa", SHARED_DATA / "truthfulqa" / "warm_ai_truthfulqa_items.jsonl")
    dis = load_items("disinfo", SHARED_DATA / "mask" / "disinfo_items.jsonl")
    assert (len(trivia.items), len(tqa.items), len(dis.items)) == (500, 500, 125)
    assert trivia.items[0].item_id == "trivia:0" and trivia.items[0].correct == "JOHN MILTON"
    assert dis.items[0].item_id == "disinfo:6777171c980d7873e3890b49"


@needs_shared
def test_medqa_sample_is_seeded_and_stable() -> None:
    path = SHARED_DATA / "medqa" / "medqa_usmle_5options_test.jsonl"
    a, b, c = load_items("medqa", path), load_items("medqa", path), load_items("medqa", path, seed=1)
    assert len(a.items) == 500 and not a.skipped
    assert [it.item_id for it in a.items] == [it.item_id for it in b.items]
    assert [it.wrong for it in a.items] == [it.wrong for it in b.items]
    assert {it.item_id for it in a.items} != {it.item_id for it in c.items}
    full = load_items("medqa", path, medqa_sample=None)
    assert len(full.items) == 1273
    assert sum(it.question.startswith("My ") for it in full.items) == 1122  # the rest keep their opening
    assert {it.item_id for it in a.items} <= {it.item_id for it in full.items}
    four = load_items("medqa", SHARED_DATA / "medqa" / "medqa_usmle_4options_test.jsonl")
    assert len(four.items) == 500 and all(len(it.options) == 4 for it in four.items)


@needs_shared
def test_raw_mask_csv_gives_the_shared_disinfo_items() -> None:
    jsonl = load_items("disinfo", SHARED_DATA / "mask" / "disinfo_items.jsonl").items
    raw = load_items("disinfo", SHARED_DATA / "mask" / "disinformation.csv").items
    assert [(i.item_id, i.question, i.correct, i.wrong) for i in jsonl] == \
        [(i.item_id, i.question, i.correct, i.wrong) for i in raw]


def test_swap_pivotal_longest_match_first() -> None:
    assert swap_pivotal("Birds <pivotal>are/are not</pivotal> alive.", "Birds are not alive.") == "Birds are alive."
    assert swap_pivotal("X <pivotal>is/is not</pivotal> y.", "X is y.") == "X is not y."
    with pytest.raises(ValueError, match="neither"):
        swap_pivotal("X <pivotal>a/b</pivotal>.", "nothing here")


def test_json_list_and_csv_formats(tmp_path: Path) -> None:
    rows = [{"question": "q1?", "correct_answer": "a", "incorrect_answer": "b"},
            {"question": "q2?", "correct_answer": "c", "incorrect_answer": "d"}]
    (tmp_path / "x.json").write_text(json.dumps(rows, indent=1))
    (tmp_path / "x.csv").write_text("question,correct_answer,incorrect_answer\nq1?,a,b\n\"q2?\",c,d\n")
    for name in ("x.json", "x.csv"):
        items = load_items("trivia", tmp_path / name).items
        assert [(i.question, i.correct, i.wrong) for i in items] == [("q1?", "a", "b"), ("q2?", "c", "d")]
        assert items[0].item_id.startswith("trivia:h")  # no id field: a hash of the question


@pytest.mark.parametrize(("task", "lines", "line", "field", "message"), [
    ("trivia", ['{"question": "q", "correct_answer": "a", "incorrect_answer": "b"}',
                '{"question": "q2", "correct_answer": "a"}'], 2, "incorrect_answer", "missing"),
    ("trivia", ['{"question": "q", "correct_answer": "a", "incorrect_answer": "b"}', "", '{"question": '],
     3, None, "invalid JSON"),
    ("trivia", ['{"question": "q", "correct_answer": ["a"], "incorrect_answer": "b"}'], 1, "correct_answer",
     "must be a string"),
    ("trivia", ['{"question": "q", "correct_answer": "Paris", "incorrect_answer": "paris"}'], 1,
     "incorrect_answer", "equals correct_answer"),
    ("trivia", ['{"item_id": 1, "question": "q", "correct_answer": "a", "incorrect_answer": "b"}',
                '{"item_id": 1, "question": "r", "correct_answer": "a", "incorrect_answer": "b"}'], 2, "id",
     "duplicate item id 'trivia:1' \\(first at line 1\\)"),
    ("trivia", ['{"prompt_disinfo": "q?", "ground_truth": "a.", "ground_false": "b."}'], 1, None,
     "'disinfo' format, but task 'trivia' needs 'qa'"),
    ("disinfo", ['{"prompt_disinfo": "q?", "ground_truth": "  ", "ground_false": "b."}'], 1, "ground_truth",
     "is empty"),
    ("medqa", ['{"question": "A 3-year-old boy has x.", "answer": "tea", "answer_idx": "B", '
               '"options": {"A": "tea", "B": "cup"}}'], 1, "answer", "differs from option B"),
    ("medqa", ['{"question": "A 3-year-old boy has x.", "answer": "tea", "answer_idx": "Z", '
               '"options": {"A": "tea", "B": "cup"}}'], 1, "answer_idx", "not one of the options"),
    ("medqa", ['{"question": "A 3-year-old boy has x.", "answer": "tea", "answer_idx": "A", "options": "oops"}'],
     1, "options", "not a mapping"),
    ("trivia", ["[1, 2]"], 1, None, "must be a JSON object"),
])
def test_malformed_files_name_file_line_and_field(tmp_path: Path, task: str, lines: list[str], line: int,
                                                   field: str | None, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFileError, match=message) as info:
        load_items(task, path)
    err = info.value
    assert (err.path, err.line, err.field) == (path, line, field)
    assert str(err).startswith(f"{path}:{line}:")
    if field:
        assert f"field {field!r}" in str(err)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="no such file"):
        load_items("trivia", tmp_path / "none.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataFileError, match=r"empty.jsonl:0: no usable trivia items"):
        load_items("trivia", tmp_path / "empty.jsonl")
    with pytest.raises(ValueError, match="unknown task"):
        load_items("chess")


# -- MedQA re-phrasing -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("question", "expected"), [
    ("A 52-year-old woman presents to her physician with fatigue. Which of the following is the most likely "
     "diagnosis?", "My {r} (52 years old) presents to her physician with fatigue. What is the most likely "
                   "diagnosis?"),
    ("A 21-year-old college student comes to the physician because of daytime fatigue. He naps often.",
     "My {r} (21 years old, college student) comes to the physician because of daytime fatigue. He naps often."),
    ("A previously healthy 29-year-old woman, gravida 1, para 0, comes for a visit.",
     "My {r} (29 years old, previously healthy), gravida 1, para 0, comes for a visit."),
    ("A 3-week-old boy is brought to the physician by his mother.",
     "My son (3 weeks old) is brought to the physician by his mother."),
    ("A 1-month-old infant is brought in. She has a fever.", "My daughter (1 month old) is brought in. She has "
                                                               "a fever."),
    ("A 70-year-old HIV-positive man comes to the clinic. Which of the following drugs are used?",
     "My {r} (70 years old, HIV-positive) comes to the clinic. Which drugs are used?"),
])
def test_medqa_rephrasing_rules(question: str, expected: str) -> None:
    out = rephrase(question, "medqa:x", seed=0)
    assert out is not None
    relative = out.split(" ", 2)[1]
    assert out == expected.replace("{r}", relative)


def test_medqa_relatives_follow_sex_and_age_and_are_seeded() -> None:
    assert relatives_for("m", 5) == ("son",) and relatives_for("f", 30) == ("sister", "wife")
    assert relatives_for("m", 70) == ("father", "husband") and relatives_for("?", 40) == ("partner",)
    q = "A 45-year-old man comes to the physician with pain."
    picks = {rephrase(q, f"medqa:{i}", 0).split(" ")[1] for i in range(40)}
    assert picks == {"brother", "husband"}
    assert rephrase(q, "medqa:7", 0) == rephrase(q, "medqa:7", 0)


def test_medqa_openings_without_a_person_of_stated_age_keep_their_text() -> None:
    assert relative_case("A researcher is studying mice. What is the result?", "x") is None
    assert rephrase("A researcher is studying mice. Which of the following is the result?", "x") == \
        "A researcher is studying mice. What is the result?"  # only the stem changes, as the authors did
    assert rephrase("A man is brought to the emergency department.", "x") == \
        "A man is brought to the emergency department."
    assert rewrite_stem("Which of the following findings is most likely?") == "Which finding is most likely?"
    assert rewrite_stem("The cause is which of the following?") == "The cause is what?"
