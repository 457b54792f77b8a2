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
