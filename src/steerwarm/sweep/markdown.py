"""The sweep report's markdown pieces: one table shape and one way of writing an effect with its interval.

Invariants: a table is a header row, a `---` row and one row per entry, followed by a blank line; an effect is written
`+x.x [lo, hi]` (pp, signed) or `x.x [lo, hi]` (a level, unsigned), and `n/a` when its estimate is missing or NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


def row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    return [row(header), row(["---"] * len(header)), *(row(r) for r in rows), ""]


def effect_cell(e: dict[str, Any] | None, key: str = "effect_pp", *, signed: bool = True) -> str:
    """An estimate `e[key]` with its 95% interval (`ci_low_pp`, `ci_high_pp`)."""
    v = None if e is None else e.get(key)
    if v is None or math.isnan(v):
        return "n/a"
    f = "+.1f" if signed else ".1f"
    return f"{v:{f}} [{e['ci_low_pp']:{f}}, {e['ci_high_pp']:{f}}]"  # type: ignore[index]
