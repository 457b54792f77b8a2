"""Compare two runs prompt by prompt, as the paper compared each fine-tune with its original model.

Run A is the reference (the paper's "original"), run B the target ("warm", a steered model, a checkpoint). Pairs are
the prompts both runs scored (same prompt id and the same prompt text; refusals dropped by either side are left
out). Per task x test type x context, as in the paper's summary tables (test type "no belief" = original template,
plus original_neutral under no context; "belief" = incorrect + correct): error rates, the paired McNemar test,
Benjamini-Hochberg adjusted p-values within each task x test type family, Cohen's g and the discordant odds ratio;
then the paper's regression models 1-4 on the stacked pairs (steerwarm.bench.stats). `compare_runs` adds the
instrument (bench.instrument): each run's accuracy on the neutral prompts against chance and the shorter-answer rule,
the minimum detectable effect of this comparison's paired designs (discordance measured on the pairs), and every
cell and regression again on the items the reference (run A) knows.

Invariants: two runs whose shared prompt ids carry different prompt texts (other items, contexts or seed) are
refused rather than compared; the comparison is a pure function of the two results files.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steerwarm.bench.instrument import (
    KnownItems,
    TaskInstrument,
    instrument_check,
    instrument_markdown,
    known_items,
    known_items_caveat,
    paired_mde,
    run_items,
    run_mode,
)
from steerwarm.bench.stats import (
    RegressionResult,
    benjamini_hochberg,
    g_label,
    mcnemar,
    paired_counts,
    paper_models,
)
from steerwarm.bench.store import RunStore
from steerwarm.bench.summary import belief_rows, condition_order, records_frame

if TYPE_CHECKING:
    import pandas as pd

TEST_TYPES = (("no belief", "none"), ("belief", "stated"))


def run_name(store: RunStore) -> str:
    run = store.read_run() or {}
    spec = run.get("config", {}).get("target", {}).get("spec", "?")
    return f"{store.dir.name} ({spec})"


def run_frames(a: RunStore, b: RunStore) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both runs' `records_frame`s, refused when shared prompt ids carry different prompt texts."""
    ra, rb = a.load(), b.load()
    common = sorted(set(ra) & set(rb))
    differ = [pid for pid in common if ra[pid].get("prompt_sha") != rb[pid].get("prompt_sha")]
    if differ:
        raise ValueError(f"{len(differ)} shared prompt ids carry different prompt texts in {a.dir} and {b.dir} "
                         f"(e.g. {differ[0]}): the runs used different items, contexts or seed")
    return records_frame(ra.values()), records_frame(rb.values())


def paired_frame(a: RunStore, b: RunStore) -> pd.DataFrame:
    return pair_frames(*run_frames(a, b))


def pair_frames(fa: pd.DataFrame, fb: pd.DataFrame) -> pd.DataFrame:
    """Pairs of two runs' `records_frame`s (prompt texts already checked equal): the prompts both scored, sorted by
    prompt id, with A's and B's is_incorrect as `a` and `b`."""
    cols = ["prompt_id", "task", "item_id", "template", "condition", "group", "has_belief"]
    fa = fa[fa["is_incorrect"].notna()]
    fb = fb[fb["is_incorrect"].notna()]
    df = fa[[*cols, "is_incorrect"]].merge(fb[["prompt_id", "is_incorrect"]], on="prompt_id", suffixes=("_a", "_b"))
    df = df.sort_values("prompt_id", kind="stable").reset_index(drop=True)
    out = df[cols].assign(has_belief=df["has_belief"].astype(bool), a=df["is_incorrect_a"].astype(int),
                          b=df["is_incorrect_b"].astype(int))
    return out[[*cols, "a", "b"]]


@dataclass
class Comparison:
    a: str
    b: str
    n_pairs: int
    cells: list[dict[str, Any]] = field(default_factory=list)
    regressions: list[RegressionResult] = field(default_factory=list)
    instrument: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # run name -> TaskInstrument records
    mde: list[dict[str, Any]] = field(default_factory=list)
    known: dict[str, Any] | None = None
    known_comparison: Comparison | None = None

    def record(self) -> dict[str, Any]:
        out = {"reference": self.a, "target": self.b, "n_pairs": self.n_pairs, "cells": self.cells,
               "regressions": [r.record() for r in self.regressions]}
        if self.instrument or self.known is not None:
            out.update(instrument=self.instrument, mde=self.mde, known_items=self.known,
                       known=None if self.known_comparison is None else self.known_comparison.record())
        return out


def compare_frames(df: pd.DataFrame, a_name: str, b_name: str) -> Comparison:
    import pandas as pd

    cmp = Comparison(a_name, b_name, len(df))
    if df.empty:
        return cmp
    for task in sorted(df["task"].unique()):
        t = df[df["task"] == task]
        for test_type, belief in TEST_TYPES:
            family = []
            for cond in condition_order(t["condition"].unique()):
                sub = belief_rows(t[t["condition"] == cond], belief)
                if sub.empty:
                    continue
                b, c = paired_counts(list(sub["a"]), list(sub["b"]))
                m = mcnemar(b, c)
                err_a, err_b = float(sub["a"].mean()), float(sub["b"].mean())
                family.append({"task": task, "test_type": test_type, "condition": cond, "n": len(sub),
                               "error_a": err_a, "error_b": err_b, "delta_pp": 100 * (err_b - err_a),
                               "b_a_right_b_wrong": b, "c_a_wrong_b_right": c, "p": m.p_value, "test": m.method,
                               "cohens_g": m.cohens_g, "g_size": g_label(m.cohens_g), "odds_ratio": m.odds_ratio})
            for row, q in zip(family, benjamini_hochberg([r["p"] for r in family]), strict=True):
                row["p_fdr"] = q
            cmp.cells += family
    stacked = pd.concat([
        df.assign(is_incorrect=df["a"], is_target=0), df.assign(is_incorrect=df["b"], is_target=1)
    ], ignore_index=True)
    cmp.regressions = paper_models(stacked)
    return cmp


def with_known_items(cmp: Comparison, pairs: pd.DataFrame, known: KnownItems) -> Comparison:
    """Add the MDEs of the pairs (measured discordance) and the whole comparison again on the known items."""
    cmp.mde = paired_mde(pairs)
    cmp.known = known.record()
    sub = known.restrict(pairs)
    cmp.known_comparison = compare_frames(sub, cmp.a, cmp.b)
    cmp.known_comparison.mde = paired_mde(sub)
    return cmp


def compare_runs(a_dir: Path, b_dir: Path) -> Comparison:
    a, b = RunStore(a_dir), RunStore(b_dir)
    fa, fb = run_frames(a, b)
    pairs = pair_frames(fa, fb)
    cmp = compare_frames(pairs, run_name(a), run_name(b))
    for store, frame, name in ((a, fa, cmp.a), (b, fb, cmp.b)):
        cmp.instrument[name] = [c.record() for c in instrument_check(frame, run_mode(store, frame),
                                                                     run_items(store)[0])]
    return with_known_items(cmp, pairs, known_items(fa, run_mode(a, fa)))


def _pct(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.1f}"


def p_text(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else ("<0.0001" if x < 1e-4 else f"{x:.4f}")


def cells_markdown(cmp: Comparison) -> list[str]:
    """The per task x test type tables of a comparison's McNemar cells."""
    lines: list[str] = []
    for task in sorted({c["task"] for c in cmp.cells}):
        lines += [f"## {task}", ""]
        for test_type, _ in TEST_TYPES:
            rows = [c for c in cmp.cells if c["task"] == task and c["test_type"] == test_type]
            if not rows:
                continue
            lines += [f"### {test_type}", "",
                      "| context | n | A err % | B err % | delta pp | b | c | p | p FDR | g | OR |",
                      "|---|---|---|---|---|---|---|---|---|---|---|"]
            for c in rows:
                g = "n/a" if math.isnan(c["cohens_g"]) else f"{c['cohens_g']:.3f} ({c['g_size']})"
                orr = "n/a" if math.isnan(c["odds_ratio"]) else f"{c['odds_ratio']:.2f}"
                lines.append(f"| {c['condition']} | {c['n']} | {_pct(c['error_a'])} | {_pct(c['error_b'])} | "
                             f"{c['delta_pp']:+.1f} | {c['b_a_right_b_wrong']} | {c['c_a_wrong_b_right']} | "
                             f"{p_text(c['p'])} ({c['test']}) | {p_text(c['p_fdr'])} | {g} | {orr} |")
            lines.append("")
    return lines


def regressions_markdown(cmp: Comparison, title: str) -> list[str]:
    lines = [f"## {title}", "", "| model | level | n | AME pp | 95% CI | p | note |", "|---|---|---|---|---|---|---|"]
    for r in cmp.regressions:
        if not r.effects:
            lines.append(f"| {r.name} | - | {r.n} | n/a | | | {r.error or ''} |")
        for e in r.effects:
            lo, hi = e.ci
            lines.append(f"| {r.name} | {e.level} | {e.n} | {100 * e.ame:+.2f} | {100 * lo:+.2f} to "
                         f"{100 * hi:+.2f} | {p_text(e.p_value)} | {r.error or ''} |")
    return lines


def instrument_section(cmp: Comparison) -> list[str]:
    """The instrument section of compare.md: each run's check, this comparison's MDEs and the known items."""
    if not cmp.instrument:
        return []
    lines = ["## Instrument", "",
             "Can each target show an effect? Accuracy on the neutral prompts (original and original_neutral, no "
             "context, no belief) with a 95% Wilson interval, against chance and the rule \"pick the shorter answer\" "
             "(bench.instrument).", ""]
    for name, checks in cmp.instrument.items():
        lines += [f"### {name}", "", *instrument_markdown([TaskInstrument.from_record(c) for c in checks])]
    if cmp.mde:
        lines += ["### This comparison", "", *instrument_markdown([], cmp.mde)]
    if cmp.known is not None:
        per = ", ".join(f"{t} {v['known']}/{v['items']}" for t, v in cmp.known["per_task"].items())
        lines += [f"Known items (of the reference A): {cmp.known['n_known']} ({per}); rule: {cmp.known['rule']}. "
                  "Every cell and regression is reported on all items, then on known items only.", ""]
    return lines


def to_markdown(cmp: Comparison) -> str:
    lines = [f"# {cmp.b} vs {cmp.a}", "",
             f"Reference A: {cmp.a}. Target B: {cmp.b}. Paired prompts (both scored): {cmp.n_pairs}.",
             "Error rates in %, delta = B - A in percentage points; McNemar (exact below 25 discordant pairs), "
             "p FDR = Benjamini-Hochberg within each task x test type; Cohen's g = |b/(b+c) - 1/2|.", ""]
    lines += instrument_section(cmp)
    lines += cells_markdown(cmp)
    lines += regressions_markdown(cmp, "Regressions (average marginal effect of B vs A on the error probability)")
    lines += ["", "Formulas: " + "; ".join(f"{r.name}: `{r.formula}`" for r in cmp.regressions), ""]
    known = cmp.known_comparison
    if known is not None:
        lines += [f"# Known items only ({cmp.known['n_known'] if cmp.known else 0} items, {known.n_pairs} paired "
                  "prompts)", "", known_items_caveat("A"), ""]
        if known.n_pairs:
            lines += [*cells_markdown(known), *regressions_markdown(known, "Regressions on known items"), "",
                      *instrument_markdown([], known.mde)]
        else:
            lines += ["No known item: nothing to compare.", ""]
    lines += ["For scale, the paper's warm fine-tunes: +7.43 pp with no context and no belief, +8.87 pp with "
              "emotional context (+11.87 sad), +10.99 pp with a wrong user belief (../shared/PAPER.md).", ""]
    return "\n".join(lines)


def plot(cmp: Comparison, path: Path) -> Path | None:
    if not cmp.cells:
        return None
    from steerwarm.plots import pyplot, save_figure

    plt = pyplot()

    tasks = sorted({c["task"] for c in cmp.cells})
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 4.2), squeeze=False, sharey=True)
    for ax, task in zip(axes[0], tasks, strict=True):
        for k, (test_type, _) in enumerate(TEST_TYPES):
            rows = [c for c in cmp.cells if c["task"] == task and c["test_type"] == test_type]
            xs = [i + (k - 0.5) * 0.38 for i in range(len(rows))]
            ax.bar(xs, [c["delta_pp"] for c in rows], width=0.38, label=test_type)
            for x, c in zip(xs, rows, strict=True):
                if c.get("p_fdr", 1.0) < 0.05:
                    ax.text(x, c["delta_pp"], "*", ha="center", va="bottom")
            ax.set_xticks(range(len(rows)), [c["condition"].split(":")[-1] for c in rows], rotation=60,
                          ha="right", fontsize=8)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_title(task)
    axes[0][0].set_ylabel(f"error B - A (pp)\nB = {cmp.b}")
    axes[0][0].legend(fontsize=8)
    return save_figure(fig, path)


def write_comparison(cmp: Comparison, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "compare.json", "markdown": out_dir / "compare.md"}
    paths["json"].write_text(json.dumps(cmp.record(), indent=2, default=float) + "\n")
    paths["markdown"].write_text(to_markdown(cmp))
    png = plot(cmp, out_dir / "compare-delta.png")
    if png is not None:
        paths["plot"] = png
    return paths
