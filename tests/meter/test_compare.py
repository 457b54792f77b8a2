"""`meter compare` after a real kill mid-write of responses.jsonl: the rerun answers what is missing, every
(target, prompt) row is present exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest

from steerwarm.meter import compare
from steerwarm.model.load import load
from steerwarm.records import read_records
from tests.bench_fixtures import one_thread, tiny_folder  # noqa: F401
from tests.killing import run_snippet, torn

SCRIPT = """
import sys
from pathlib import Path
from steerwarm.meter import compare
from steerwarm.model.load import load

from tests.meter.test_compare import Even
compare.WarmthClassifier.default = staticmethod(Even)  # the meter's classifier is not what is tested here
table = compare.compare([sys.argv[2]], Path(sys.argv[1]), limit=10, max_tokens=3, scorer=load(sys.argv[2]))
print(table[sys.argv[2]]["p_warm"].n)
"""


class Even:
    def p_warm(self, texts: list[str]) -> list[float]:
        return [0.5 for _ in texts]


@pytest.mark.usefixtures("one_thread")
def test_compare_resumes_after_a_kill_mid_write(tiny_folder: Path, tmp_path: Path,  # noqa: F811
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "cmp"
    responses = out / "responses.jsonl"
    run_snippet(SCRIPT, str(out), str(tiny_folder), kill_after=5)  # dies writing the 5th row of the first batch
    assert torn(responses) and len(read_records(responses)) == 4
    monkeypatch.setattr(compare.WarmthClassifier, "default", staticmethod(Even))
    table = compare.compare([str(tiny_folder)], out, limit=10, max_tokens=3, scorer=load(str(tiny_folder)))
    assert table[str(tiny_folder)]["p_warm"].n == 10
    rows = read_records(responses)
    assert len(rows) == 10 and len({(r["target"], r["id"]) for r in rows}) == 10
    assert all({"socio_t", "p_warm", "base_nll", "text"} <= set(r) for r in rows)
    assert (out / "summary.md").is_file()


@pytest.mark.usefixtures("one_thread")
def test_compare_answers_a_prompt_target_again_after_its_text_changed(tiny_folder: Path, tmp_path: Path,  # noqa: F811
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compare.WarmthClassifier, "default", staticmethod(Even))
    prompt = tmp_path / "kind.txt"
    prompt.write_text("be kind .", encoding="utf-8")
    spec, out, scorer = f"prompt={prompt}", tmp_path / "cmp", load(str(tiny_folder))
    kw = {"limit": 2, "max_tokens": 2, "scorer": scorer, "model": str(tiny_folder)}
    compare.compare([spec], out, **kw)
    first = read_records(out / "responses.jsonl")
    assert len(first) == 2 and {r["prompt_sha256"] for r in first} == {compare.prompt_sha256(spec)}
    compare.compare([spec], out, **kw)
    assert len(read_records(out / "responses.jsonl")) == 2  # same text: resumed, nothing answered again
    prompt.write_text("be warm .", encoding="utf-8")
    table = compare.compare([spec], out, **kw)
    rows = read_records(out / "responses.jsonl")
    assert len(rows) == 4 and rows[2]["prompt_sha256"] == compare.prompt_sha256(spec) != first[0]["prompt_sha256"]
    assert table[spec]["p_warm"].n == 2 and compare.prompt_sha256("base") is None
