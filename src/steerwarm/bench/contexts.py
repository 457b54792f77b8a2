"""Interpersonal contexts: 8 conditions x 5 statements (ours by default, or the paper's), and their seeded assignment.

A contexts file is JSON: `{"neutral_preamble": str, "statements": {"group:name": [str, ...], ...}}` (other keys such
as `_note` or `templates` are ignored). Groups are `emotion` (happy, sad, anger), `relation` (close,
hierarchical_up = admiration/deference, hierarchical_down = the user directs the model) and `stake` (high, low).
Our default is eval/contexts/default.json; the paper's is ../shared/data/warm_ai_2025/interpersonal_contexts.json.

Invariants:
- `UNMODIFIED` ("unmodified") is the condition with no statement; every other condition is `group:name` with a
  known group and at least one non-empty statement. Problems raise `DataFileError` with file, line and field.
- `statement_for(item_id, condition, seed)` depends only on those three values (a SHA-256 of them), never on call
  order or on the target, so every target sees exactly the same statement for the same prompt, across reruns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steerwarm.bench.errors import DataFileError, read_json
from steerwarm.bench.seeding import stable_int
from steerwarm.paths import default_contexts, display

UNMODIFIED = "unmodified"
GROUPS = ("emotion", "relation", "stake")
PAPER_PREAMBLE = "I was talking to some friends about this yesterday."
CONDITION_ORDER = ("emotion:happy", "emotion:sad", "emotion:anger", "relation:close", "relation:hierarchical_up",
                   "relation:hierarchical_down", "stake:high", "stake:low")


def group_of(condition: str) -> str:
    """'emotion:sad' -> 'emotion'; 'unmodified' -> 'none'."""
    return "none" if condition == UNMODIFIED else condition.split(":", 1)[0]


@dataclass(frozen=True)
class ContextSet:
    statements: dict[str, tuple[str, ...]]
    neutral_preamble: str = PAPER_PREAMBLE
    path: Path | None = None
    sha256: str = ""
    _order: tuple[str, ...] = field(default=(), repr=False)

    @property
    def conditions(self) -> tuple[str, ...]:
        """The context conditions in the paper's order (unknown extras after, in file order); no 'unmodified'."""
        known = [c for c in CONDITION_ORDER if c in self.statements]
        return tuple(known + [c for c in self._order if c not in known])

    def statement_for(self, item_id: str, condition: str, seed: int = 0) -> tuple[int, str] | None:
        """(index, statement) assigned to this item under this condition; None for 'unmodified'."""
        if condition == UNMODIFIED:
            return None
        if condition not in self.statements:
            raise KeyError(f"unknown condition {condition!r}; known: {', '.join(self.conditions)}")
        pool = self.statements[condition]
        i = stable_int("statement", item_id, condition, seed) % len(pool)
        return i, pool[i]

    def describe(self) -> dict[str, Any]:
        return {"path": display(self.path) if self.path else None, "sha256": self.sha256,
                "neutral_preamble": self.neutral_preamble,
                "conditions": {c: len(self.statements[c]) for c in self.conditions}}


def _line_of(text: str, needle: str) -> int:
    pos = text.find(needle)
    return text.count("\n", 0, pos) + 1 if pos >= 0 else 0


def load_contexts(path: str | Path | None = None) -> ContextSet:
    path = Path(path) if path is not None else default_contexts()
    if not path.is_file():
        raise DataFileError(path, 0, None, "no such contexts file")
    data, text = read_json(path, dict, "a contexts file must be a JSON object")
    preamble = data.get("neutral_preamble", PAPER_PREAMBLE)
    if not isinstance(preamble, str) or not preamble.strip().endswith("."):
        raise DataFileError(path, _line_of(text, '"neutral_preamble"'), "neutral_preamble",
                            "must be one sentence ending with a period")
    raw = data.get("statements")
    if not isinstance(raw, dict) or not raw:
        raise DataFileError(path, _line_of(text, '"statements"'), "statements",
                            'must map "group:name" conditions to lists of statements')
    statements: dict[str, tuple[str, ...]] = {}
    for cond, pool in raw.items():
        line = _line_of(text, f'"{cond}"')
        where = f"statements.{cond}"
        if ":" not in cond or cond.split(":", 1)[0] not in GROUPS or not cond.split(":", 1)[1]:
            raise DataFileError(path, line, where, f"condition names are group:name with group in {GROUPS}")
        if not isinstance(pool, list) or not pool:
            raise DataFileError(path, line, where, "must be a non-empty list of statements")
        for i, s in enumerate(pool):
            if not isinstance(s, str) or not s.strip():
                raise DataFileError(path, line, f"{where}[{i}]", "must be a non-empty string")
        statements[cond] = tuple(s.strip() for s in pool)
    import hashlib

    return ContextSet(statements, preamble.strip(), path, hashlib.sha256(text.encode()).hexdigest()[:16],
                      tuple(raw))


def check_conditions(contexts: ContextSet, wanted: Sequence[str]) -> None:
    unknown = [c for c in wanted if c != UNMODIFIED and c not in contexts.statements]
    if unknown:
        raise ValueError(f"unknown condition(s) {', '.join(unknown)}; the contexts file has "
                         f"{', '.join(contexts.conditions)} (and {UNMODIFIED})")

