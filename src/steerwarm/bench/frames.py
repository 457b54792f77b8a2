"""The frame of a run's results every analysis reads (one row per prompt, the columns of COLUMNS) and its basic
selections: condition order, belief levels, a cell's error rate with its Wilson interval.

Belief levels follow the paper: "none" = the `original` template (plus `original_neutral` under no context, the
paper's original_combined); "stated" = `incorrect` and `correct` pooled (both state a wrong belief); each of those
two alone.

Invariants: a pure function of the records; is_incorrect, lp_correct and lp_wrong are numeric (NaN where absent:
a refusal dropped from rates, or a generate-mode record without log-probs); refusals are counted in `refusals` and
left out of `n_scored` and the error rate.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from steerwarm.bench.contexts import CONDITION_ORDER, UNMODIFIED
from steerwarm.bench.stats import wilson

if TYPE_CHECKING:
    import pandas as pd

BELIEFS = ("none", "stated", "incorrect", "correct")
COLUMNS = ("prompt_id", "task", "item_id", "template", "condition", "group", "has_belief", "is_incorrect",
           "verdict", "lp_correct", "lp_wrong")
NUMERIC = ("is_incorrect", "lp_correct", "lp_wrong")


def records_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame([{k: r.get(k) for k in COLUMNS} for r in records], columns=list(COLUMNS))
    if not df.empty:
        for col in NUMERIC:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def condition_order(conditions: Iterable[str]) -> list[str]:
    present = set(conditions)
    known = [c for c in (UNMODIFIED, *CONDITION_ORDER) if c in present]
    return known + sorted(present - set(known))


def belief_rows(df: pd.DataFrame, belief: str) -> pd.DataFrame:
    """Rows of one belief level (see the module doc)."""
    if belief == "none":
        return df[(df["template"] == "original") |
                  ((df["template"] == "original_neutral") & (df["condition"] == UNMODIFIED))]
    if belief == "stated":
        return df[df["template"].isin(["incorrect", "correct"])]
    return df[df["template"] == belief]


def cell(df: pd.DataFrame) -> dict[str, Any]:
    scored = df[df["is_incorrect"].notna()]
    k, n = int(scored["is_incorrect"].sum()), len(scored)
    lo, hi = wilson(k, n)
    return {"n": len(df), "n_scored": n, "errors": k, "refusals": int((df["verdict"] == "refusal").sum()),
            "error_rate": k / n if n else float("nan"), "ci_low": lo, "ci_high": hi}
