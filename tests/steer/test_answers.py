"""The answer cache (AnswerLog) after a real kill mid-write: every answer is present exactly once."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

from steerwarm.records import read_records
from steerwarm.steer.answers import AnswerLog
from tests.killing import run_snippet, torn

PROMPTS = [SimpleNamespace(id=f"p{i}", text=f"prompt {i}") for i in range(9)]


def answer_all(path: Path) -> list[str]:
    """Answer PROMPTS through the log at `path` in batches of 2 (the answer is the prompt in capitals); returns the
    prompts the generator was asked."""
    calls: list[str] = []

    def generate(users: list[str]) -> list[str]:
        calls.extend(users)
        return [u.upper() for u in users]

    answers = AnswerLog(path).answers("k", PROMPTS, generate, batch_size=2, progress=False)  # type: ignore[arg-type]
    assert answers == [p.text.upper() for p in PROMPTS]
    return calls


if __name__ == "__main__":
    answer_all(Path(sys.argv[1]))


def test_answer_cache_resumes_after_a_kill_mid_write(tmp_path: Path) -> None:
    log = tmp_path / "answers.jsonl"
    script = "import sys, runpy; runpy.run_module('tests.steer.test_answers', run_name='__main__')"
    run_snippet(script, str(log), kill_after=5)  # batches of 2: dies writing the first row of the third batch
    assert torn(log) and [r["id"] for r in read_records(log)] == ["p0", "p1", "p2", "p3"]
    assert answer_all(log) == [f"prompt {i}" for i in range(4, 9)]  # the torn row's prompt and the rest, once each
    rows = read_records(log)
    assert [r["id"] for r in rows] == [f"p{i}" for i in range(9)]
    assert all(r["text"] == r["prompt"].upper() and r["key"] == "k" for r in rows)
    assert log.read_text().endswith("\n")
