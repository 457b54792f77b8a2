"""Committed reports, cards and records name no machine's paths: every .md/.json/.jsonl under eval/ and vectors/
that git tracks is scanned for absolute paths of the machine it was made on (a home or root folder, the workplace,
/tmp, a user cache dir). Generators write paths through `steerwarm.paths.display`; see tests/test_paths.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MACHINE_PATH = re.compile(
    r"(?<![\w.$-])(?:/root/|/home/|/Users/|/work/|/tmp/|/var/folders/|[A-Za-z]:\\\\?Users\\\\?|~/\.cache/"
    r"|/\.cache/steerwarm)")


def committed_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z", "--", "eval", "vectors"], cwd=ROOT, capture_output=True,
                         check=True).stdout.decode()
    return [ROOT / f for f in out.split("\0") if f.endswith((".md", ".json", ".jsonl")) and (ROOT / f).is_file()]


def test_the_scan_sees_the_reports() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in committed_files()}
    assert "vectors/warm.md" in names and "eval/sweeps/default/report.json" in names


@pytest.mark.parametrize("text", ["/root/.cache/steerwarm/runs/x", "/work/main/vectors", "/tmp/abc/run.json",
                                  "/home/ann/x", "~/.cache/steerwarm/finetunes", r"C:\\Users\\ann\\x"])
def test_the_pattern_catches_machine_paths(text: str) -> None:
    assert MACHINE_PATH.search(f'"path": "{text}"')


@pytest.mark.parametrize("text", ["$STEERWARM_HOME/runs/x", "vectors/warm.safetensors", "eval/items/trivia.jsonl",
                                  "../shared/data/triviaqa/items.jsonl", "$STEERWARM_SHARED_DATA/warm_ai_2025",
                                  "http://127.0.0.1:8000/v1", "https://example.org/work/tmp/"])
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
