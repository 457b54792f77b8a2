"""Committed reports, cards, records and docs name no machine's paths: every .md/.json/.jsonl under eval/ and
vectors/ and every tracked Markdown file is scanned for absolute paths of the machine it was made on (a home or
root folder, the workplace, /tmp, a user cache dir). Generators write paths through `steerwarm.paths.display`;
see tests/test_paths.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Top folders that only ever hold one machine's files: homes, the root user's home, this workplace, temporary files.
APP = "steerwarm"  # a user cache dir of ours: <cache>/steerwarm
MACHINE_TOPS = ("root", "home", "Users", "work", "tmp", "var/folders")
MACHINE_PATH = re.compile(
    r"(?<![\w.$-])(?:/(?:" + "|".join(MACHINE_TOPS) + r")/|[A-Za-z]:\\\\?Users\\\\?|~/\.cache/|/\.cache/"
    + APP + ")")


def committed_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode()
    records = [f for f in out.split("\0") if f.startswith(("eval/", "vectors/")) and f.endswith((".json", ".jsonl"))]
    docs = [f for f in out.split("\0") if f.endswith(".md")]
    return [ROOT / f for f in sorted({*records, *docs}) if (ROOT / f).is_file()]


def test_the_scan_sees_the_reports() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in committed_files()}
    assert {"vectors/warm.md", "eval/sweeps/default/report.json", "README.md", "server/README.md"} <= names


# The examples are put together from parts so that this file itself names no machine path.
@pytest.mark.parametrize("parts", [["", "root", ".cache", "steerwarm", "runs", "x"], ["", "work", "main", "vectors"],
                                   ["", "tmp", "abc", "run.json"], ["", "home", "ann", "x"],
                                   ["~", ".cache", "steerwarm", "finetunes"]])
def test_the_pattern_catches_machine_paths(parts: list[str]) -> None:
    assert MACHINE_PATH.search(f'"path": "{"/".join(parts)}"')


def test_the_pattern_catches_a_windows_home() -> None:
    assert MACHINE_PATH.search('"path": "C:' + "\\\\Users\\\\ann\\\\x" + '"')


@pytest.mark.parametrize("text", ["$STEERWARM_HOME/runs/x", "vectors/warm.safetensors", "eval/items/trivia.jsonl",
                                  "../shared/data/triviaqa/items.jsonl", "$STEERWARM_SHARED_DATA/warm_ai_2025",
                                  "http://127.0.0.1:8000/v1", "https://example.org/docs/v1/"])
def test_the_pattern_lets_portable_paths_through(text: str) -> None:
    assert not MACHINE_PATH.search(f'"path": "{text}"')


def test_no_committed_report_names_a_machine_path() -> None:
    found = []
    for path in committed_files():
        for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
            m = MACHINE_PATH.search(line)
            if m:
                found.append(f"{path.relative_to(ROOT)}:{lineno}: ...{line[max(0, m.start() - 40):m.end() + 40]}...")
    assert not found, "machine paths in committed files (write them through steerwarm.paths.display):\n" + \
        "\n".join(found[:30])
