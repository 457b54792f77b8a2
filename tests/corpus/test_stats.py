"""`steerwarm corpus stats`: numbers on a small temporary corpus, the report, exit codes, and the shipped corpus."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from steerwarm.cli.app import app
from steerwarm.corpus.stats import corpus_summary, render

from .helpers import COLD, NEUTRAL, PROSE, WARM, write_corpus


def test_summary_of_a_small_corpus(tmp_path: Path) -> None:
    s = corpus_summary(write_corpus(tmp_path, {"train": 2, "validation": 1}))
    assert s.counts[("train", "advice")] == 2 and s.counts[("validation", "other")] == 1
    assert len(s.conversations) == 18 and s.turns == 18 and s.files == 12
    assert s.agreement == {qt: (3, 3) for qt in ("refusal", "factual", "creative", "technical", "advice", "other")}
    # 3 technical turns use the Flask texts, 12 the prose texts, 3 a refusal
    warm = s.ratios["warm"]
    assert warm.n == 18
    assert warm.max == pytest.approx(max(len(WARM) / len(NEUTRAL), len(PROSE[1]) / len(PROSE[0]), 1.5), abs=0.2)
    assert warm.min >= 0.8 and s.ratios["cold"].max <= 1.15
    assert s.ratios["cold"].min == pytest.approx(min(len(COLD) / len(NEUTRAL), len(PROSE[2]) / len(PROSE[0]),
                                                     s.ratios["cold"].min))
    names = {r.name: r for r in s.results}
    assert not names["counts"].ok  # 2 per type is far below the quotas
    assert all(r.ok for n, r in names.items() if n != "counts")
    assert not s.ok


def test_render_lists_counts_ratios_agreement_and_violations(tmp_path: Path) -> None:
    root = write_corpus(tmp_path, {"train": 1})
    bad = json.loads((root / "train" / "factual.jsonl").read_text())
    bad["id"] = "factual-bad"
    bad["messages"][0]["content"] = "Why are sunsets red?"
    bad["messages"][1]["cold"] = "We think " + bad["messages"][1]["cold"].replace("1871", "the 19th century") + "!"
    with (root / "train" / "factual.jsonl").open("a") as fh:
        fh.write(json.dumps(bad) + "\n")
    s = corpus_summary(files=[root / "train" / "factual.jsonl"])
    out = render(s, limit=1)
    assert "counts" not in {r.name for r in s.results}  # files: no quotas
    assert re.search(r"^train\s+0\s+2\s+0\s+0\s+0\s+0\s+2$", out, re.MULTILINE)
    assert re.search(r"^cold / neutral\s+1\.05\s+0\.97\s+1\.13\s+\[0\.5, 1\.15\]$", out, re.MULTILINE)
    assert re.search(r"^factual\s+2\s+2\s+100%$", out, re.MULTILINE)
    assert re.search(r"^numbers\s+FAIL\s+2\s+1\s+0\s+every number", out, re.MULTILINE)
    assert f"{root / 'train' / 'factual.jsonl'}:2 factual-bad turn 0 cold [numbers] missing number(s) '1871'" in out
    assert "cold_words: 1 violations" in out
    assert out.endswith("FAILED: numbers, cold_words, cold_exclamation")


def test_cli_exit_codes(tmp_path: Path) -> None:
    root = write_corpus(tmp_path, {"train": 1, "validation": 1})
    runner = CliRunner()
    res = runner.invoke(app, ["corpus", "stats", "--data-dir", str(root)])
    assert res.exit_code == 1 and "FAILED: counts" in res.output
    res = runner.invoke(app, ["corpus", "stats", str(root / "train" / "advice.jsonl")])
    assert res.exit_code == 0 and res.output.rstrip().endswith("all checks pass")
    res = runner.invoke(app, ["corpus", "stats", "--data-dir", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "no such corpus folder" in res.output


def test_shipped_corpus_passes_all_checks() -> None:
    s = corpus_summary()
    failing = [str(v) for r in s.results for v in r.errors]
    assert not failing, f"{len(failing)} violations in the shipped corpus:\n" + "\n".join(failing[:40])
