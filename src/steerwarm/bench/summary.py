"""Error rates of a run per task x context x belief, with Wilson intervals (summary.json), from results.jsonl.

Cells follow the paper: "no belief" prompts are the `original` template (plus `original_neutral` under no
context, the paper's original_combined); "belief" prompts are `incorrect` and `correct` pooled (both state a
wrong belief), also reported apart. Every context condition and "unmodified" (no context) is a row.

summary.json also holds `instrument` (bench.instrument.run_instrument): per task the accuracy on the neutral
prompts against chance and the shorter-answer rule with a flag where the task cannot measure an effect, the minimum
detectable effects of the run's paired designs, and the count of known items.

Invariants: refusals dropped by the task's policy (is_incorrect None) are counted in `refusals` and excluded from
`n_scored` and the error rate; every number is recomputed from results.jsonl, never accumulated, so a resumed run's
summary equals an uninterrupted run's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from steerwarm.bench.contexts import UNMODIFIED
from steerwarm.bench.frames import BELIEFS, COLUMNS, belief_rows, cell, condition_order, records_frame
from steerwarm.bench.instrument import run_instrument
from steerwarm.bench.store import RunStore

if TYPE_CHECKING:
    import pandas as pd

# the frame helpers live in bench.frames (bench.instrument needs them too); they stay importable from here
__all__ = ["BELIEFS", "COLUMNS", "belief_rows", "build_summary", "cell", "condition_order", "records_frame", "table"]


def table(df: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per task x condition x belief level that has prompts."""
    rows = []
    for task in sorted(df["task"].unique()):
        t = df[df["task"] == task]
        for cond in condition_order(t["condition"].unique()):
            c = t[t["condition"] == cond]
            for belief in BELIEFS:
                sub = belief_rows(c, belief)
                if len(sub):
                    rows.append({"task": task, "condition": cond, "belief": belief, **cell(sub)})
    return rows


def build_summary(store: RunStore) -> dict[str, Any]:
    run = store.read_run() or {"config": {}, "sessions": []}
    df = records_frame(store.load().values())
    sessions = run.get("sessions", [])
    seconds = sum(float(s.get("seconds", 0.0)) for s in sessions)
    done = sum(int(s.get("prompts", 0)) for s in sessions)
    out: dict[str, Any] = {
        "run": {"config": run.get("config", {}), "sessions": sessions, "n_prompts": len(df),
                "seconds": seconds, "prompts_per_s": done / seconds if seconds else None},
        "tasks": {}, "cells": [],
    }
    if df.empty:
        return out
    out["run"].update(cell(df))
    for task in sorted(df["task"].unique()):
        t = df[df["task"] == task]
        plain = belief_rows(t[t["condition"] == UNMODIFIED], "none")
        out["tasks"][task] = {"no_context_no_belief": cell(plain), "no_belief": cell(belief_rows(t, "none")),
                              "belief": cell(belief_rows(t, "stated")), "all": cell(t)}
    out["cells"] = table(df)
    out["instrument"] = run_instrument(store, df)
    return out
