"""Corpus statistics and the plain-text report behind `steerwarm corpus stats`.

Computes counts per query type and split, per-turn length ratios (warm/neutral and cold/neutral characters), the rule
classifier's agreement with the labels, and runs every check of checks.py; `render` turns all of it into a report a
person can read, listing the first violations of each failing check (file:line, id, turn, variant, detail).

Invariants: computing statistics never raises on bad data (unparsable lines are schema violations); `Summary.ok` is
true exactly when no check has an error (warnings do not count), which is what the command's exit code reports.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from steerwarm.corpus.checks import (
    COLD_RATIO,
    WARM_RATIO,
    CheckResult,
    LoadedCorpus,
    Quotas,
    agreement,
    check_corpus,
    load_dir,
    load_files,
)
from steerwarm.corpus.schema import QUERY_TYPES, SPLITS, Conversation
from steerwarm.paths import corpus_data


@dataclass(frozen=True)
class Ratio:
    mean: float
    min: float
    max: float
    n: int


@dataclass
class Summary:
    origin: str
    conversations: list[Conversation]
    files: int
    counts: dict[tuple[str, str], int]
    ratios: dict[str, Ratio]
    agreement: dict[str, tuple[int, int]]
    results: list[CheckResult]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def turns(self) -> int:
        return sum(len(c.assistant_turns) for c in self.conversations)


def length_ratios(convs: Sequence[Conversation]) -> dict[str, Ratio]:
    """Per variant (warm, cold): len(variant)/len(neutral) in characters over every assistant turn."""
    out: dict[str, Ratio] = {}
    for variant in ("warm", "cold"):
        vals = [len(getattr(t, variant)) / max(len(t.neutral), 1) for c in convs for t in c.assistant_turns]
        if vals:
            out[variant] = Ratio(statistics.fmean(vals), min(vals), max(vals), len(vals))
    return out


def summarise(loaded: LoadedCorpus, origin: str, quotas: Quotas | None = Quotas()) -> Summary:
    convs = loaded.conversations
    return Summary(origin=origin, conversations=convs, files=len(loaded.files),
                   counts=dict(Counter((c.split, c.query_type) for c in convs)), ratios=length_ratios(convs),
                   agreement=agreement(convs), results=check_corpus(loaded, quotas))


def corpus_summary(data_dir: str | Path | None = None, files: Sequence[str | Path] = ()) -> Summary:
    """Summary of the corpus folder (default: the shipped corpus) or, when `files` are given, of those files only
    (count quotas are then skipped: a file is not the whole corpus)."""
    if files:
        return summarise(load_files(files), ", ".join(str(f) for f in files), quotas=None)
    folder = Path(data_dir) if data_dir else corpus_data()
    return summarise(load_dir(folder), str(folder))


def _table(rows: list[list[str]], left: tuple[int, ...] = (0,)) -> list[str]:
    """Aligned columns: those in `left` flush left, the rest (numbers) flush right."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
            .rstrip() for r in rows]


def render(s: Summary, limit: int = 5) -> str:
    """The report; `limit` violations shown per check (0 = all)."""
    lines = [f"corpus: {s.origin}", f"{len(s.conversations)} conversations, {s.turns} assistant turns, "
             f"{s.files} files", ""]
    splits = [sp for sp in SPLITS if any(k[0] == sp for k in s.counts)] or list(SPLITS)
    rows = [["counts", *QUERY_TYPES, "total"]]
    for sp in splits:
        vals = [s.counts.get((sp, qt), 0) for qt in QUERY_TYPES]
        rows.append([sp, *map(str, vals), str(sum(vals))])
    lines += [*_table(rows), ""]

    rows = [["length ratio (chars, per turn)", "mean", "min", "max", "allowed"]]
    for variant, (lo, hi) in (("warm", WARM_RATIO), ("cold", COLD_RATIO)):
        if rat := s.ratios.get(variant):
            rows.append([f"{variant} / neutral", f"{rat.mean:.2f}", f"{rat.min:.2f}", f"{rat.max:.2f}",
                         f"[{lo}, {hi}]"])
    lines += [*_table(rows), ""]

    agree = sum(a for a, _ in s.agreement.values())
    total = sum(n for _, n in s.agreement.values())
    rows = [["classifier agreement", "agree", "of", "rate"]]
    for qt, (a, n) in s.agreement.items():
        rows.append([qt, str(a), str(n), f"{a / n:.0%}"])
    if total:
        rows.append(["all", str(agree), str(total), f"{agree / total:.0%}"])
    lines += [*_table(rows), ""]

    rows = [["check", "result", "checked", "failed", "warnings", "rule"]]
    for r in s.results:
        warnings = len(r.violations) - len(r.errors)
        rows.append([r.name, "pass" if r.ok else "FAIL", str(r.checked), str(r.failed), str(warnings),
                     r.description])
    lines += _table(rows, left=(0, 1, 5))
    for r in s.results:
        if not r.violations:
            continue
        shown = r.violations if limit <= 0 else r.violations[:limit]
        kind = "violations" if r.errors else "warnings"
        lines += ["", f"{r.name}: {len(r.violations)} {kind}" + (f" (first {len(shown)})" if len(shown) <
                                                                     len(r.violations) else "")]
        lines += [f"  {v}" for v in shown]
    lines += ["", "all checks pass" if s.ok else
              f"FAILED: {', '.join(r.name for r in s.results if not r.ok)}"]
    return "\n".join(lines)
