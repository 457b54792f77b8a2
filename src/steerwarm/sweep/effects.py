"""Effects of the dial: error rates and belief effects per point, regression effects of warmth per dial unit (per
side of the dial), steered versus fine-tuned comparisons, and the paper's published numbers.

Invariants:
- Paired prompt sets: every point is compared on the prompts all points with results scored.
- Belief effect (sycophancy) = error(stated wrong belief) - error(none).
- Intervals, all 95%: belief effects and their changes, percentile intervals of a bootstrap over items (an item is
  resampled with all its prompts in all points; fixed seed per scope); regression AMEs, delta method with standard
  errors clustered by item; paired comparisons, `bench.compare.compare_frames` (McNemar, models 1-4).
- The instrument (bench.instrument) is the baseline point's (the dial point nearest 0): its accuracy on the neutral
  prompts against chance and the shorter-answer rule, and its known items; the minimum detectable effects are those
  of each compared point (references, the dial points at their dial positions, and in dial units the +1 and -1
  points even without references) against it, discordance measured.
  `restrict_sweep` gives the same sweep on the known items only, so every effect can be recomputed there.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steerwarm.bench.compare import compare_frames, pair_frames
from steerwarm.bench.contexts import UNMODIFIED
from steerwarm.bench.instrument import (
    KnownItems,
    belief_effect_mde,
    comparison_mde,
    instrument_check,
    known_items,
    paired_mde,
    run_items,
    run_mode,
)
from steerwarm.bench.seeding import stable_int
from steerwarm.bench.stats import Effect, RegressionResult, fit_effect, mcnemar, paired_counts
from steerwarm.bench.store import RunStore
from steerwarm.bench.summary import belief_rows
from steerwarm.paths import display

if TYPE_CHECKING:
    import pandas as pd
from steerwarm.sweep.folder import REFERENCE_DIAL, Point, Sweep

ALL = "all tasks"
BELIEF_LEVELS = (("none", "no belief"), ("stated", "stated wrong belief"))
BOOTSTRAP = 2000
# the paper's summary CSVs: source -> (file, label); its datasets -> our tasks; its test types -> our belief levels
PAPER_FILES = {"warm_ft": ("results_warm_ft.csv", "paper warm fine-tunes"),
               "cold_ft": ("results_cold_ft.csv", "paper cold fine-tunes"),
               "warm_sysprompt": ("results_warm_sysprompt.csv", "paper warm system prompt")}
PAPER_COLUMNS = ("Amendment_type", "Original Accuracy (%)", "Raw Diff (pp)", "Model", "Dataset", "Test_Type")
PAPER_TASKS = {"disinfo": "disinfo", "trivia": "trivia", "triviaqa": "trivia", "truthfulqa": "truthfulqa",
               "medqa": "medqa"}
PAPER_TEST_TYPES = {"Normal": "none", "Sycophancy": "stated"}
SCOPES = (("no context", True), ("all contexts", False))


def task_scope(df: pd.DataFrame, task: str) -> pd.DataFrame:
    return df if task == ALL else df[df["task"] == task]


# -- bootstrap over items -------------------------------------------------------------------------------------------
class ItemBootstrap:
    """Error rates of every (point, belief level) within one task scope, on the full sample and on BOOTSTRAP
    resamples of items (multinomial weights, seeded by the scope's name); linear combinations of rates get
    percentile intervals."""

    def __init__(self, points: Sequence[Point], task: str, n_boot: int = BOOTSTRAP) -> None:
        import numpy as np
        import pandas as pd

        frames = {p.label: task_scope(p.frame, task) for p in points}
        keys = sorted({k for f in frames.values() for k in f["key"]})
        self.cols = {(label, belief): i for i, (label, belief) in
                     enumerate((label, b) for label in frames for b, _ in BELIEF_LEVELS)}
        err = np.zeros((len(keys), len(self.cols)))
        num = np.zeros((len(keys), len(self.cols)))
        for (label, belief), j in self.cols.items():
            f = frames[label]
            sub = belief_rows(f[f["is_incorrect"].notna()], belief)
            g = sub.groupby("key")["is_incorrect"].agg(["sum", "count"]).reindex(pd.Index(keys), fill_value=0)
            err[:, j], num[:, j] = g["sum"].to_numpy(float), g["count"].to_numpy(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.full = err.sum(0) / num.sum(0)
            if keys:
                rng = np.random.default_rng(stable_int("sweep-report-bootstrap", task))
                w = rng.multinomial(len(keys), np.full(len(keys), 1 / len(keys)), size=n_boot).astype(float)
                self.boot = (w @ err) / (w @ num)
            else:
                self.boot = np.full((n_boot, len(self.cols)), np.nan)

    def combo(self, coefs: dict[tuple[str, str], float]) -> dict[str, float]:
        """Estimate and 95% percentile interval of sum(coef * rate), in percentage points."""
        import numpy as np

        idx = [self.cols[k] for k in coefs]
        c = np.array(list(coefs.values()))
        est = float(self.full[idx] @ c)
        if math.isnan(est):
            return {"effect_pp": math.nan, "ci_low_pp": math.nan, "ci_high_pp": math.nan}
        draws = self.boot[:, idx] @ c
        draws = draws[~np.isnan(draws)]
        lo, hi = (np.percentile(draws, [2.5, 97.5]) if len(draws) else (math.nan, math.nan))
        return {"effect_pp": 100 * est, "ci_low_pp": 100 * float(lo), "ci_high_pp": 100 * float(hi)}

    def belief_effect(self, label: str) -> dict[str, float]:
        return self.combo({(label, "stated"): 1.0, (label, "none"): -1.0})

    def belief_effect_change(self, target: str, base: str) -> dict[str, float]:
        return self.combo({(target, "stated"): 1.0, (target, "none"): -1.0, (base, "stated"): -1.0,
                           (base, "none"): 1.0})


# -- regressions of the dial ----------------------------------------------------------------------------------------
SIDES = (("all", "all dial points"), ("warm", "warm side, warmth >= 0"), ("cold", "cold side, warmth <= 0"))
LEVEL_NAMES = {"0": "no belief", "1": "belief", "1 - 0": "belief - no belief"}


def _effect(e: Effect | None) -> dict[str, Any]:
    if e is None:
        return {"ame_pp": math.nan, "se_pp": math.nan, "ci_low_pp": math.nan, "ci_high_pp": math.nan,
                "p": math.nan, "n": 0}
    lo, hi = e.ci
    return {"ame_pp": 100 * e.ame, "se_pp": 100 * e.se, "ci_low_pp": 100 * lo, "ci_high_pp": 100 * hi,
            "p": e.p_value, "n": e.n}


def dial_rows(points: Iterable[Point]) -> pd.DataFrame:
    """Scored prompts of dial points stacked, with their warmth, has_belief as 0/1 and the item key."""
    import pandas as pd

    frames = [p.frame[p.frame["is_incorrect"].notna()].assign(warmth=p.warmth) for p in points]
    if not frames:
        return pd.DataFrame(columns=["is_incorrect", "warmth", "task", "condition", "has_belief", "key"])
    df = pd.concat(frames, ignore_index=True)
    # categorical dtypes (only the levels present) make the formula's design matrices fast on large sweeps
    return df.assign(has_belief=df["has_belief"].astype(bool).astype(int), is_incorrect=df["is_incorrect"].astype(int),
                     warmth=df["warmth"].astype(float), task=df["task"].astype(str).astype("category"),
                     condition=df["condition"].astype(str).astype("category"))


def dial_regressions(sweep: Sweep) -> list[dict[str, Any]]:
    """Logits of is_incorrect on warmth over the dial points, overall and per side: the main-effects model and the
    warmth x has_belief model; AMEs of warmth per unit of dial (pp), clustered by item."""
    out = []
    for side, desc in SIDES:
        pts = [p for p in sweep.dial if p.warmth is not None and
               (side == "all" or (side == "warm" and p.warmth >= 0) or (side == "cold" and p.warmth <= 0))]
        data = dial_rows(pts)
        # task and condition are pandas categoricals: the formula names them bare (patsy codes them as C() would,
        # treatment contrasts against the first level; C() itself would skip the categorical fast path)
        terms = "".join(f" + {col}" for col in ("task", "condition") if not data.empty and data[col].nunique() > 1)
        two_beliefs = not data.empty and data["has_belief"].nunique() > 1
        main = "is_incorrect ~ warmth" + terms + (" + has_belief" if two_beliefs else "")
        specs: list[tuple[str, str, str | None]] = [("main", main, None)]
        if two_beliefs:
            specs.append(("interaction", "is_incorrect ~ warmth * has_belief" + terms, "has_belief"))
        for model, formula, by in specs:
            if len({p.warmth for p in pts}) < 2:
                res = RegressionResult(f"{model} ({side})", formula, len(data))
                res.error = "needs at least two dial values on this side"
            else:
                res = fit_effect(data, formula, f"{model} ({side})", by=by, var="warmth", continuous=True,
                                 difference=by is not None, cluster="key")
            effects = {LEVEL_NAMES.get(e.level, e.level): _effect(e) for e in res.effects}
            out.append({"model": model, "side": side, "side_desc": desc, "formula": formula, "n": res.n,
                        "warmths": sorted(p.warmth for p in pts if p.warmth is not None), "error": res.error,
                        "odds_ratio_per_unit": res.odds_ratio, "effects": effects})
    return out


def regression_of(regs: list[dict[str, Any]], model: str, side: str) -> dict[str, Any] | None:
    return next((r for r in regs if r["model"] == model and r["side"] == side), None)


# -- paired comparisons: steered at +-1 and the fine-tunes, each against warmth 0 -----------------------------------
def _delta(paired: pd.DataFrame) -> dict[str, Any]:
    if paired.empty:
        return {"n": 0, "delta_pp": math.nan, "b": 0, "c": 0, "p": math.nan, "test": "none"}
    b, c = paired_counts(list(paired["a"]), list(paired["b"]))
    m = mcnemar(b, c)
    return {"n": len(paired), "delta_pp": 100 * float(paired["b"].mean() - paired["a"].mean()), "b": b, "c": c,
            "p": m.p_value, "test": m.method}


def comparisons(sweep: Sweep, boots: dict[str, ItemBootstrap]) -> list[dict[str, Any]]:
    base = sweep.at(0.0)
    if base is None:
        return []
    pairs: list[tuple[Point, str, str | None]] = []
    for ref in sweep.references:
        side = {1.0: "warm", -1.0: "cold"}.get(ref.x) if ref.x is not None else None
        steered = sweep.at(ref.x) if ref.x is not None else None
        if steered is not None and all(p is not steered for p, _, _ in pairs):
            pairs.append((steered, "steered", side))
        pairs.append((ref, "fine-tune" if side else "reference", side))
    out = []
    for target, kind, side in pairs:
        paired = pair_frames(base.frame, target.frame)
        cmp = compare_frames(paired, base.label, target.label)
        models = {r.name.split(":")[0]: r for r in cmp.regressions}
        m4 = {e.level: e for e in models["model 4"].effects} if "model 4" in models else {}
        m1 = models["model 1"].effects[0] if "model 1" in models and models["model 1"].effects else None
        per_task: dict[str, Any] = {}
        for task in [*sweep.tasks, ALL]:
            t = task_scope(paired, task)
            per_task[task] = {scope: {b: _delta(belief_rows(t[t["condition"] == UNMODIFIED] if plain else t, b))
                                      ["delta_pp"] for b, _ in BELIEF_LEVELS} for scope, plain in SCOPES}
        out.append({"name": f"{target.label} vs {base.label}", "kind": kind, "side": side, "base": base.label,
                    "target": target.label, "x": target.x, "n_pairs": len(paired),
                    "delta": {b: _delta(belief_rows(paired, b)) for b, _ in BELIEF_LEVELS},
                    "delta_no_context_no_belief": _delta(belief_rows(paired[paired["condition"] == UNMODIFIED],
                                                                     "none")),
                    "ame": {"model 1": _effect(m1), "no belief": _effect(m4.get("no belief", m1)),
                            "belief": _effect(m4.get("belief"))},
                    "belief_effect_change": boots[ALL].belief_effect_change(target.label, base.label),
                    "per_task": per_task, "comparison": cmp.record()})
    return out


# -- the paper's published numbers ----------------------------------------------------------------------------------
def paper_summary(paper_dir: Path | None, tasks: Sequence[str]) -> dict[str, Any]:
    """Mean error change (pp, = minus the accuracy change) of the paper's rows per source x task x belief level x
    scope (no context = the unmodified rows; all contexts = every row), all models pooled, and the range of the
    per-model means; task ALL pools the paper's datasets that are tasks of this sweep. "contexts": the same per
    source x belief level x context, the tasks of this sweep pooled."""
    import pandas as pd

    if paper_dir is None or not paper_dir.is_dir():
        where = None if paper_dir is None else display(paper_dir)
        return {"available": False, "dir": where, "rows": [], "contexts": [],
                "notes": [f"no paper summary folder at {where}"]}
    out: dict[str, Any] = {"available": True, "dir": display(paper_dir), "rows": [], "contexts": [], "notes": []}
    for source, (fname, _) in PAPER_FILES.items():
        path = paper_dir / fname
        if not path.is_file():
            out["notes"].append(f"{fname} not found")
            continue
        df = pd.read_csv(path)
        lacking = [c for c in PAPER_COLUMNS if c not in df.columns]
        if lacking:
            out["notes"].append(f"{fname} lacks column(s) {', '.join(lacking)}")
            continue
        df = df.assign(context=df["Amendment_type"].astype(str).str.split().str[0],
                       task=df["Dataset"].astype(str).str.strip().str.lower().map(PAPER_TASKS),
                       belief=df["Test_Type"].astype(str).str.strip().map(PAPER_TEST_TYPES),
                       error_change_pp=-pd.to_numeric(df["Raw Diff (pp)"], errors="coerce"),
                       original_error_pct=100 - pd.to_numeric(df["Original Accuracy (%)"], errors="coerce"))
        df = df[df["task"].isin(list(tasks)) & df["belief"].notna()]
        for task in [*tasks, ALL]:
            t = task_scope(df, task)
            for belief, _ in BELIEF_LEVELS:
                for scope, plain in SCOPES:
                    sub = t[(t["belief"] == belief) & ((t["context"] == UNMODIFIED) if plain else True)]
                    if sub.empty:
                        continue
                    per_model = sub.groupby("Model")["error_change_pp"].mean()
                    out["rows"].append({"source": source, "task": task, "belief": belief, "scope": scope,
                                        "mean_pp": float(sub["error_change_pp"].mean()),
                                        "model_min_pp": float(per_model.min()), "model_max_pp": float(per_model.max()),
                                        "n_models": len(per_model), "n_rows": len(sub),
                                        "original_error_pct": float(sub["original_error_pct"].mean())})
        for (belief, context), sub in df.groupby(["belief", "context"]):
            per_model = sub.groupby("Model")["error_change_pp"].mean()
            out["contexts"].append({"source": source, "belief": belief, "context": context,
                                    "mean_pp": float(sub["error_change_pp"].mean()),
                                    "model_min_pp": float(per_model.min()), "model_max_pp": float(per_model.max()),
                                    "n_models": len(per_model), "n_rows": len(sub)})
    return out


def paper_row(paper: dict[str, Any], source: str, task: str, belief: str, scope: str) -> dict[str, Any] | None:
    return next((r for r in paper["rows"] if (r["source"], r["task"], r["belief"], r["scope"]) ==
                 (source, task, belief, scope)), None)


# -- the instrument: can the baseline point show an effect, how large must it be, which items it knows ---------------
def baseline_point(sweep: Sweep) -> Point:
    """The point every paired comparison and the heatmap is against: the dial point nearest warmth 0."""
    return min(sweep.dial, key=lambda p: abs(p.warmth or 0.0)) if sweep.dial else sweep.points[0]


def compared_points(sweep: Sweep, base: Point) -> list[Point]:
    """The points compared with the baseline: the references and the dial points at their dial positions; in dial
    units, also the dial points at the fine-tunes' positions (+1, -1) when no reference brings them, so a dial-only
    sweep compares its +1 and -1 points (in that order, after the references')."""
    candidates: list[Point | None] = []
    for ref in sweep.references:
        candidates += [sweep.at(ref.x) if ref.x is not None else None, ref]
    if str(sweep.config.get("units", "")).startswith("dial"):
        candidates += [sweep.at(x) for x in sorted(set(REFERENCE_DIAL.values()), reverse=True)]
    out: list[Point] = []
    for p in candidates:
        if p is not None and p is not base and all(p is not q for q in out):
            out.append(p)
    return out


def sweep_instrument(sweep: Sweep) -> tuple[dict[str, Any], KnownItems]:
    """(the instrument block of the report, the baseline point's known items); see the module doc."""
    base = baseline_point(sweep)
    store = RunStore(sweep.dir / base.run)
    mode = run_mode(store, base.frame)
    items, notes = run_items(store)
    checks = instrument_check(base.frame, mode, items)
    known = known_items(base.frame, mode)
    mde: list[dict[str, Any]] = []
    targets = compared_points(sweep, base)
    for target in targets:
        pairs = pair_frames(base.frame, target.frame)
        for m in [*paired_mde(pairs), *paired_mde(pairs.assign(task=ALL))]:
            mde.append({"comparison": f"{target.label} vs {base.label}", **m})
    if not targets:
        scored = base.frame.assign(task=ALL)
        mde += [{"comparison": f"any point vs {base.label}", **m} for m in comparison_mde(scored)]
    mde += [{"comparison": f"belief effect within {base.label}", **m}
            for m in [*belief_effect_mde(base.frame), *belief_effect_mde(base.frame.assign(task=ALL))]]
    block = {"point": base.label, "mode": mode, "tasks": {c.task: c.record() for c in checks}, "notes": notes,
             "mde": mde, "known_items": {k: v for k, v in known.record().items() if k != "items"}}
    return block, known


def restrict_sweep(sweep: Sweep, known: KnownItems) -> Sweep:
    """The sweep with every point's prompts restricted to the known items."""
    return dataclasses.replace(sweep, points=[dataclasses.replace(p, frame=known.restrict(p.frame))
                                              for p in sweep.points])
