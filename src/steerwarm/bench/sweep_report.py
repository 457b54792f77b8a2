"""The report of a warmth sweep: error rate, sycophancy and context effects against the dial, the regression effect of
warmth per unit of dial next to the warm and cold fine-tunes' effects and the paper's published numbers, plots, and
a plain-language conclusion derived from the numbers by stated rules.

Input: a sweep folder, SWEEP_DIR/sweep.json (`config`, `points`: label, kind "dial" | "reference", warmth (None for
references), spec, run) and one ordinary benchmark run folder per point (SWEEP_DIR/<point.run>/results.jsonl),
optionally SWEEP_DIR/meter.jsonl (per point: p_warm, p_warm_se, nll, nll_se, n). Output (default SWEEP_DIR/report):
report.md, report.json and the PNGs errors-vs-warmth, belief-effect-vs-warmth, context-warmth-heatmap and (with a
meter file) meter-vs-warmth.

Invariants:
- A pure function of the sweep folder (and the paper's summary CSVs, read only, never copied): every number is
  recomputed from the results files; the bootstrap uses a fixed seed per scope, so two reports of one folder are equal.
- Paired prompt sets: every point is compared on the prompts all points with results scored (prompt ids
  intersected, as `report.py` does; the report says when this restricts a point), and shared prompt ids must carry
  the same prompt text (prompt_sha) in every point, else the sweep is refused. Points with no results yet are listed
  and left out. Refusals (is_incorrect None) count in `refusals`, not in rates.
- Belief levels are summary.py's: "none" = original template (+ original_neutral under no context), "stated" =
  incorrect + correct (both state a wrong belief). Belief effect (sycophancy) = error(stated) - error(none).
- Intervals, all 95%: error rates, Wilson score (stats.wilson); belief effects and their changes between points,
  percentile intervals of a bootstrap over items (BOOTSTRAP resamples; an item is resampled with all its prompts in
  all points, so the correlation of one item's belief and no-belief prompts, and of one item across points, is
  kept); regression AMEs, delta method with standard errors clustered by item (the same prompt recurs at every
  dial value); paired comparisons, compare.compare_frames (McNemar, models 1-4); meter, mean +- 1.96 SE.
- Dial positions of references: by the dial's calibration the warm fine-tune (spec sft=warm) sits at +1 and the
  cold one (sft=cold) at -1; other references have no dial position and are drawn as horizontal lines.
- Conclusion rules: an effect is present when its 95% CI excludes 0; a fine-tune's effect is reproduced by steering
  when it lies inside the steered effect's 95% CI and the two are not both present with opposite signs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steerwarm.bench.compare import _p, compare_frames, pair_frames
from steerwarm.bench.contexts import UNMODIFIED
from steerwarm.bench.report import _fmt
from steerwarm.bench.seeding import stable_int
from steerwarm.bench.stats import Effect, RegressionResult, fit_effect, mcnemar, paired_counts
from steerwarm.bench.store import RunStore
from steerwarm.bench.summary import belief_rows, cell, condition_order, records_frame
from steerwarm.bench.validate import SHARED_DATA

if TYPE_CHECKING:
    import pandas as pd

SWEEP_JSON = "sweep.json"
METER_JSONL = "meter.jsonl"
PAPER_DIR = SHARED_DATA / "warm_ai_2025" / "summary_data"
ALL = "all tasks"
BELIEF_LEVELS = (("none", "no belief"), ("stated", "stated wrong belief"))
REFERENCE_DIAL = {"sft=warm": 1.0, "sft=cold": -1.0}
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
BELIEF_COLORS = {"none": "tab:blue", "stated": "tab:orange"}
REF_MARKERS = {"sft=warm": "*", "sft=cold": "v"}


# -- loading --------------------------------------------------------------------------------------------------------
@dataclass
class Point:
    label: str
    kind: str  # "dial" | "reference"
    warmth: float | None
    spec: str
    run: str
    frame: pd.DataFrame
    n_prompts: int
    n_scored: int
    refusals: int
    seconds: float

    @property
    def x(self) -> float | None:
        """Position on the dial axis: the warmth of a dial point, +1 / -1 for the warm / cold fine-tune."""
        return self.warmth if self.kind == "dial" else REFERENCE_DIAL.get(self.spec)


@dataclass
class Sweep:
    dir: Path
    config: dict[str, Any]
    sessions: list[dict[str, Any]]
    points: list[Point]  # dial points by warmth, then references in sweep.json order
    missing: list[str]  # labels of points without results
    n_common: int
    restricted: bool

    @property
    def dial(self) -> list[Point]:
        return [p for p in self.points if p.kind == "dial"]

    @property
    def references(self) -> list[Point]:
        return [p for p in self.points if p.kind != "dial"]

    def at(self, warmth: float) -> Point | None:
        return next((p for p in self.dial if p.warmth is not None and abs(p.warmth - warmth) < 1e-9), None)

    @property
    def tasks(self) -> list[str]:
        return sorted({t for p in self.points for t in p.frame["task"].unique()})


def load_sweep(sweep_dir: Path) -> Sweep:
    path = sweep_dir / SWEEP_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no sweep.json; not a sweep folder")
    meta = json.loads(path.read_text())
    points, missing = [], []
    shas: dict[str, str] = {}
    for raw in meta.get("points", []):
        store = RunStore(sweep_dir / raw["run"])
        records = store.load()
        if not records:
            missing.append(raw["label"])
            continue
        for pid, rec in records.items():
            sha = rec.get("prompt_sha")
            if sha is not None and shas.setdefault(pid, sha) != sha:
                raise ValueError(f"prompt {pid} carries different prompt texts in different points of {sweep_dir} "
                                 f"(at {raw['label']}): the points used different items, contexts or seed")
        frame = records_frame(records.values())
        del records
        run = store.read_run() or {}
        seconds = sum(float(s.get("seconds", 0.0)) for s in run.get("sessions", []))
        whole = cell(frame)
        warmth = raw.get("warmth")
        points.append(Point(raw["label"], raw.get("kind", "dial"), None if warmth is None else float(warmth),
                            str(raw.get("spec", raw["label"])), raw["run"], frame, len(frame), whole["n_scored"],
                            whole["refusals"], seconds))
    common = set.intersection(*(set(p.frame["prompt_id"]) for p in points)) if points else set()
    restricted = any(p.n_prompts != len(common) for p in points)
    for p in points:
        if restricted:
            p.frame = p.frame[p.frame["prompt_id"].isin(common)]
        p.frame = p.frame.assign(key=p.frame["task"].astype(str) + "\x1f" + p.frame["item_id"].astype(str))
    dial = sorted((p for p in points if p.kind == "dial"), key=lambda p: p.warmth if p.warmth is not None else 0.0)
    refs = [p for p in points if p.kind != "dial"]
    return Sweep(sweep_dir, meta.get("config", {}), meta.get("sessions", []), dial + refs, missing, len(common),
                 restricted)


def _scope(df: pd.DataFrame, task: str) -> pd.DataFrame:
    return df if task == ALL else df[df["task"] == task]


# -- bootstrap over items -------------------------------------------------------------------------------------------
class ItemBootstrap:
    """Error rates of every (point, belief level) within one task scope, on the full sample and on BOOTSTRAP
    resamples of items (multinomial weights, seeded by the scope's name); linear combinations of rates get
    percentile intervals."""

    def __init__(self, points: Sequence[Point], task: str, n_boot: int = BOOTSTRAP) -> None:
        import numpy as np
        import pandas as pd

        frames = {p.label: _scope(p.frame, task) for p in points}
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


def _regression(regs: list[dict[str, Any]], model: str, side: str) -> dict[str, Any] | None:
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
            t = _scope(paired, task)
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
    per-model means; task ALL pools the paper's datasets that are tasks of this sweep."""
    import pandas as pd

    if paper_dir is None or not paper_dir.is_dir():
        return {"available": False, "dir": None if paper_dir is None else str(paper_dir), "rows": [],
                "notes": [f"no paper summary folder at {paper_dir}"]}
    out: dict[str, Any] = {"available": True, "dir": str(paper_dir), "rows": [], "notes": []}
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
            t = _scope(df, task)
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
    return out


def _paper_row(paper: dict[str, Any], source: str, task: str, belief: str, scope: str) -> dict[str, Any] | None:
    return next((r for r in paper["rows"] if (r["source"], r["task"], r["belief"], r["scope"]) ==
                 (source, task, belief, scope)), None)


# -- meter ----------------------------------------------------------------------------------------------------------
def read_meter(sweep: Sweep) -> list[dict[str, Any]] | None:
    path = sweep.dir / METER_JSONL
    if not path.is_file():
        return None
    by_label = {p.label: p for p in sweep.points}
    rows = []
    text = path.read_text()
    for line in text[: text.rfind("\n") + 1].splitlines():  # complete lines: a torn last line is ignored
        if not line.strip():
            continue
        r = json.loads(line)
        point = by_label.get(r.get("label", ""))
        kind = r.get("kind") or (point.kind if point else "dial")
        x = point.x if point else (r.get("warmth") if kind == "dial" else None)
        rows.append({**r, "kind": kind, "spec": point.spec if point else r.get("spec", r.get("label")), "x": x})
    return rows


# -- conclusion -----------------------------------------------------------------------------------------------------
def _present(e: dict[str, Any]) -> int:
    """+1 / -1 when the 95% CI lies above / below 0, 0 when it includes 0 (or is unknown)."""
    lo, hi = e.get("ci_low_pp", math.nan), e.get("ci_high_pp", math.nan)
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return 0
    return 1 if lo > 0 else -1 if hi < 0 else 0


def _val(e: dict[str, Any], key: str = "ame_pp") -> float:
    v = e.get(key, math.nan)
    return math.nan if v is None else float(v)


def _ci(e: dict[str, Any]) -> str:
    return f"95% CI {e['ci_low_pp']:+.2f} to {e['ci_high_pp']:+.2f}"


def reproduces(steered: dict[str, Any], finetuned: dict[str, Any], key: str = "ame_pp") -> tuple[bool | None, str]:
    """The module doc's rule; None when either effect is unknown."""
    s, f = _val(steered, key), _val(finetuned, key)
    if math.isnan(s) or math.isnan(f) or math.isnan(_val(steered, "ci_low_pp")):
        return None, "cannot be judged (an effect is missing)"
    ps, pf = _present(steered), _present(finetuned)
    if ps and pf and ps != pf:
        return False, (f"opposite sign: steered {s:+.2f} pp ({_ci(steered)}), fine-tune {f:+.2f} pp "
                       f"({_ci(finetuned)})")
    if not steered["ci_low_pp"] <= f <= steered["ci_high_pp"]:
        return False, f"the fine-tune's {f:+.2f} pp lies outside the steered effect's {s:+.2f} pp ({_ci(steered)})"
    return True, f"the fine-tune's {f:+.2f} pp lies inside the steered effect's {s:+.2f} pp ({_ci(steered)})"


def _direction(e: dict[str, Any], up: str, down: str, none: str) -> str:
    return {1: up, -1: down, 0: none}[_present(e)]


def _main_effect(r: dict[str, Any] | None) -> dict[str, Any] | None:
    return r["effects"].get("all") if r else None


def conclusion(data: dict[str, Any]) -> list[str]:
    out: list[str] = []
    regs = data["regressions"]
    main = {side: _regression(regs, "main", side) for side, _ in SIDES}
    inter = {side: _regression(regs, "interaction", side) for side, _ in SIDES}
    for side, verb in (("warm", "Dialling warmth up from 0"), ("cold", "On the cold side (dial <= 0), raising warmth")):
        r = main[side]
        e = _main_effect(r)
        if r is None or not e:
            out.append(f"{verb}: no estimate ({r['error'] if r else 'no model'}).")
            continue
        what = _direction(e, "raises the error rate", "lowers the error rate",
                          "does not detectably change the error rate (the CI includes 0)")
        down = "" if side == "warm" else \
            f"; dialling down from 0 to -1 thus changes errors by about {-e['ame_pp']:+.2f} pp"
        out.append(f"{verb} {what}: {e['ame_pp']:+.2f} pp per unit of dial ({_ci(e)}, p {_p(e['p'])}; "
                   f"dial values {', '.join(f'{w:+g}' for w in r['warmths'])}){down}.")
    w, c = (_main_effect(main[s]) for s in ("warm", "cold"))
    if w and c:
        overlap = w["ci_low_pp"] <= c["ci_high_pp"] and c["ci_low_pp"] <= w["ci_high_pp"]
        out.append("The warm-side and cold-side slopes " + (
            "have overlapping CIs: consistent with one linear effect of the dial." if overlap else
            f"differ (CIs do not overlap: {w['ame_pp']:+.2f} vs {c['ame_pp']:+.2f} pp per unit): the dial's effect "
            "on errors is not linear."))
    r = inter["warm"]
    d = r["effects"].get("belief - no belief") if r else None
    if r and d:
        what = _direction(d, "raises sycophancy (warmth costs more errors when the user states a wrong belief)",
                          "lowers sycophancy (warmth costs fewer errors when the user states a wrong belief)",
                          "does not detectably change sycophancy (the CI of the difference includes 0)")
        b, n = r["effects"].get("belief", {}), r["effects"].get("no belief", {})
        out.append(f"On the warm side, warmth {what}: per unit of dial {b.get('ame_pp', math.nan):+.2f} pp with a "
                   f"stated wrong belief vs {n.get('ame_pp', math.nan):+.2f} pp without, difference "
                   f"{d['ame_pp']:+.2f} pp ({_ci(d)}).")
    for side, ref in (("warm", "sft=warm"), ("cold", "sft=cold")):
        ft = next((c for c in data["comparisons"] if c["kind"] == "fine-tune" and c["side"] == side), None)
        if ft is None:
            continue
        st = next((c for c in data["comparisons"] if c["kind"] == "steered" and c["side"] == side), None)
        sign = "+1" if side == "warm" else "-1"
        fallback = inter[side] or main[side]
        measures = []
        for name, key in (("errors without a belief", "no belief"), ("errors with a stated wrong belief", "belief")):
            f_eff = ft["ame"][key]
            if st is not None:
                s_eff, src = st["ame"][key], f"steered at {sign}"
            elif fallback and fallback["effects"]:
                per_unit = fallback["effects"].get(key) or fallback["effects"].get("all") or {}
                k = 1.0 if side == "warm" else -1.0
                s_eff = {kk: (k * v if kk in ("ame_pp", "ci_low_pp", "ci_high_pp") else v)
                         for kk, v in per_unit.items()}
                if k < 0 and s_eff:
                    s_eff["ci_low_pp"], s_eff["ci_high_pp"] = s_eff["ci_high_pp"], s_eff["ci_low_pp"]
                src = f"the {side}-side regression slope times {sign} ({sign} is not on the grid)"
            else:
                continue
            measures.append((name, src, s_eff, f_eff, "ame_pp"))
        if st is not None:
            measures.append(("sycophancy (change of the belief effect)", f"steered at {sign}",
                             st["belief_effect_change"], ft["belief_effect_change"], "effect_pp"))
        misses = []
        for name, src, s_eff, f_eff, key in measures:
            ok, why = reproduces(s_eff, f_eff, key)
            verdict = {True: "reproduces", False: "does NOT reproduce", None: "cannot be compared with"}[ok]
            out.append(f"On {name}, steering ({src}) {verdict} the {side} fine-tune ({ref}): {why}.")
            if ok is False:
                misses.append(name)
        if misses:
            out.append(f"In sum, steering does NOT reproduce the {side} fine-tune on: {'; '.join(misses)}.")
        elif measures:
            out.append(f"In sum, steering reproduces the {side} fine-tune on every measure compared, within the "
                       "stated intervals.")
    paper = data["paper"]
    if not paper["available"]:
        out.append(f"The paper's published numbers were not available ({'; '.join(paper['notes'])}); no comparison "
                   "with the paper is made.")
    else:
        for side, source in (("warm", "warm_ft"), ("cold", "cold_ft")):
            ours = [c for c in data["comparisons"] if c["side"] == side]
            for belief, belief_name in BELIEF_LEVELS:
                row = _paper_row(paper, source, ALL, belief, "all contexts")
                if row is None or not ours:
                    continue
                parts = []
                for c in ours:
                    v = c["per_task"][ALL]["all contexts"][belief]
                    inside = row["model_min_pp"] <= v <= row["model_max_pp"]
                    parts.append(f"{c['target']} {v:+.2f} pp ({'inside' if inside else 'outside'} that range)")
                out.append(f"Paper, {side} fine-tunes, {belief_name}, contexts pooled, on our tasks: "
                           f"{row['mean_pp']:+.2f} pp error change (mean of {row['n_models']} models; per-model means "
                           f"{row['model_min_pp']:+.2f} to {row['model_max_pp']:+.2f}); ours: {'; '.join(parts)}.")
    meter = data.get("meter")
    if meter:
        zero = next((m for m in meter if m["kind"] == "dial" and m.get("x") == 0), None)
        top = max((m for m in meter if m["kind"] == "dial" and m.get("x") is not None), key=lambda m: m["x"],
                  default=None)
        if zero and top and top is not zero:
            for key, name in (("p_warm", "the warmth meter's p(warm)"), ("nll", "the base model's NLL per token")):
                if zero.get(key) is None or top.get(key) is None:
                    continue
                diff = top[key] - zero[key]
                se = math.hypot(top.get(f"{key}_se") or 0.0, zero.get(f"{key}_se") or 0.0)
                lo, hi = diff - 1.959964 * se, diff + 1.959964 * se
                what = "rises" if lo > 0 else "falls" if hi < 0 else "does not detectably change"
                out.append(f"From dial 0 to {top['x']:+g}, {name} {what}: {zero[key]:.3f} -> {top[key]:.3f} "
                           f"(difference {diff:+.3f}, 95% CI {lo:+.3f} to {hi:+.3f}).")
    return out


# -- plots ----------------------------------------------------------------------------------------------------------
def _pct(c: dict[str, Any]) -> tuple[float, float, float]:
    if not c["n_scored"]:
        return math.nan, 0.0, 0.0
    r = 100 * c["error_rate"]
    return r, r - 100 * c["ci_low"], 100 * c["ci_high"] - r


def _panels(n: int, plt: Any, height: float = 3.8) -> tuple[Any, list[Any], Any]:
    """n panels in rows of 3, and a spare grid slot (for the legend) or None."""
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, height * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_axis_off()
    return fig, flat[:n], flat[n] if len(flat) > n else None


def _dial_axis(ax: Any) -> None:
    from matplotlib.ticker import MultipleLocator

    ax.set_xlabel("warmth dial (units; fine-tunes at +1 / -1)")
    ax.xaxis.set_major_locator(MultipleLocator(0.5))
    ax.grid(alpha=0.3)


def _legend(axes: list[Any], spare: Any) -> None:
    """One legend for the figure: in the spare grid slot, else to the right of the last panel."""
    handles, labels = axes[0].get_legend_handles_labels()
    if spare is not None:
        spare.legend(handles, labels, loc="center", fontsize=8)
    else:
        axes[-1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7)


def _task_panels(data: dict[str, Any]) -> tuple[Any, list[Any], Any, list[str], list[dict[str, Any]],
                                                list[dict[str, Any]]]:
    """One panel per task plus all tasks: (figure, axes, spare axis, scopes, dial points, reference points)."""
    from steerwarm.plots import pyplot

    scopes = [*data["tasks"], ALL]
    fig, axes, spare = _panels(len(scopes), pyplot())
    dial = [p for p in data["points"] if p["kind"] == "dial"]
    refs = [p for p in data["points"] if p["kind"] != "dial"]
    return fig, axes, spare, scopes, dial, refs


def _draw_reference(ax: Any, ref: dict[str, Any], y: float, lo: float, hi: float, marker_color: str,
                    line_color: str, suffix: str) -> None:
    """A reference point: a large marker with its interval at its dial position (+1 / -1, nudged right so it does
    not hide the steered point), or a dashed line when it has no dial position."""
    if ref["x"] is not None:
        ax.errorbar([ref["x"] + 0.04], [y], yerr=[[lo], [hi]], color=marker_color,
                    marker=REF_MARKERS.get(ref["spec"], "D"), ms=11, mec="black", capsize=3, ls="none",
                    label=f"{ref['spec']} (at {ref['x']:+g}){suffix}")
    else:
        ax.axhline(y, color=line_color, ls="--", lw=1, label=f"{ref['label']} (no dial position){suffix}")


def plot_errors(data: dict[str, Any], path: Path) -> Path:
    from steerwarm.plots import save_figure

    fig, axes, spare, scopes, dial, refs = _task_panels(data)
    for ax, task in zip(axes, scopes, strict=True):
        for belief, name in BELIEF_LEVELS:
            color = BELIEF_COLORS[belief]
            ys = [_pct(data["errors"][task][p["label"]][belief]) for p in dial]
            ax.errorbar([p["x"] for p in dial], [y[0] for y in ys], yerr=[[y[1] for y in ys], [y[2] for y in ys]],
                        color=color, marker="o", ms=4, capsize=3, label=f"steered, {name}")
            for ref in refs:
                y, lo, hi = _pct(data["errors"][task][ref["label"]][belief])
                _draw_reference(ax, ref, y, lo, hi, color, color, f", {name}")
        ax.set_title(task)
        ax.set_ylabel("error rate (%)")
        _dial_axis(ax)
    _legend(axes, spare)
    fig.suptitle("Error rate vs warmth, 95% Wilson intervals")
    return save_figure(fig, path)


def plot_belief_effect(data: dict[str, Any], path: Path) -> Path:
    from steerwarm.plots import save_figure

    fig, axes, spare, scopes, dial, refs = _task_panels(data)
    for ax, task in zip(axes, scopes, strict=True):
        be = data["belief_effect"][task]
        xs = [p["x"] for p in dial]
        ys = [be[p["label"]]["effect_pp"] for p in dial]
        ax.fill_between(xs, [be[p["label"]]["ci_low_pp"] for p in dial], [be[p["label"]]["ci_high_pp"] for p in dial],
                        color="tab:purple", alpha=0.2, label="95% bootstrap CI (items)")
        ax.plot(xs, ys, color="tab:purple", marker="o", ms=4, label="steered")
        for ref in refs:
            e = be[ref["label"]]
            marker_color = "tab:red" if ref["x"] is not None and ref["x"] > 0 else "tab:cyan"
            _draw_reference(ax, ref, e["effect_pp"], e["effect_pp"] - e["ci_low_pp"], e["ci_high_pp"] - e["effect_pp"],
                            marker_color, "grey", "")
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(task)
        ax.set_ylabel("belief effect (pp):\nerror with wrong belief - without")
        _dial_axis(ax)
    _legend(axes, spare)
    fig.suptitle("Sycophancy (belief effect) vs warmth")
    return save_figure(fig, path)


def plot_heatmap(data: dict[str, Any], path: Path) -> Path:
    import numpy as np

    from steerwarm.plots import pyplot, save_figure

    plt = pyplot()
    hm = data["context_heatmap"]
    conds, labels = hm["conditions"], hm["columns"]
    vals = np.array([[hm["cells"][c][lab]["delta_pp"] for lab in labels] for c in conds], dtype=float)
    finite = vals[np.isfinite(vals)]
    vmax = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
    fig, ax = plt.subplots(figsize=(2.5 + 0.75 * len(labels), 2.2 + 0.45 * len(conds)))
    im = ax.imshow(np.ma.masked_invalid(vals), cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
    for i in range(len(conds)):
        for j in range(len(labels)):
            v = vals[i, j]
            ax.text(j, i, "n/a" if math.isnan(v) else f"{v:+.1f}", ha="center", va="center", fontsize=7,
                    color="white" if not math.isnan(v) and abs(v) > 0.6 * vmax else "black")
    n_dial = sum(1 for p in data["points"] if p["kind"] == "dial")
    if 0 < n_dial < len(labels):
        ax.axvline(n_dial - 0.5, color="black", lw=2)
    ax.set_xticks(range(len(labels)), hm["column_names"], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(conds)), conds, fontsize=8)
    ax.set_xlabel("warmth dial | references")
    ax.set_ylabel("context")
    fig.colorbar(im, ax=ax, label="error change (pp)")
    ax.set_title(f"Error rate change (pp) from {hm['baseline']}\nno-belief prompts, tasks pooled", fontsize=10)
    return save_figure(fig, path)


def plot_meter(data: dict[str, Any], path: Path) -> Path:
    from steerwarm.plots import pyplot, save_figure

    plt = pyplot()
    meter = data["meter"]
    dial = sorted((m for m in meter if m["kind"] == "dial" and m.get("x") is not None), key=lambda m: m["x"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (key, ylabel, title) in zip(axes, (
            ("p_warm", "p(warm) (probability, 0-1)", "Warmth meter: mean p(warm) +- SE"),
            ("nll", "NLL (nats per token)", "Coherence cost: base model's NLL of answers +- SE")), strict=True):
        ax.errorbar([m["x"] for m in dial], [m.get(key) for m in dial], yerr=[m.get(f"{key}_se") or 0 for m in dial],
                    marker="o", ms=4, capsize=3, color="tab:green", label="steered")
        for m in meter:
            if m["kind"] == "dial" or m.get(key) is None:
                continue
            if m.get("x") is not None:
                ax.errorbar([m["x"] + 0.04], [m[key]], yerr=[m.get(f"{key}_se") or 0], ls="none", capsize=3, ms=11,
                            marker=REF_MARKERS.get(m["spec"], "D"), mec="black",
                            color="tab:red" if m["x"] > 0 else "tab:cyan", label=f"{m['spec']} (at {m['x']:+g})")
            else:
                ax.axhline(m[key], color="grey", ls="--", lw=1, label=f"{m.get('label')} (no dial position)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        _dial_axis(ax)
    _legend(list(axes), None)
    return save_figure(fig, path)


# -- report ---------------------------------------------------------------------------------------------------------
def _pp(e: dict[str, Any], key: str = "effect_pp") -> str:
    v = e.get(key)
    if v is None or math.isnan(v):
        return "n/a"
    return f"{v:+.1f} [{e['ci_low_pp']:+.1f}, {e['ci_high_pp']:+.1f}]"


def _num(v: Any, fmt: str = "+.2f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows), ""]


def _clean(x: Any) -> Any:
    """JSON-safe: NaN and infinities become null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if hasattr(x, "item"):
        return _clean(x.item())
    return x


def build_sweep_report(sweep_dir: Path, paper_dir: Path | None = None) -> tuple[list[str], dict[str, Any]]:
    """(report.md lines before the plots and conclusion, all numbers); see the module doc."""
    sweep = load_sweep(sweep_dir)
    if not sweep.points:
        raise ValueError(f"{sweep_dir}: no point of the sweep has results yet")
    if paper_dir is None:
        paper_dir = PAPER_DIR  # reported as absent when it is
    tasks = sweep.tasks
    scopes = [*tasks, ALL]
    pts = sweep.points
    data: dict[str, Any] = {
        "sweep_dir": str(sweep_dir), "config": sweep.config, "tasks": tasks, "n_common_prompts": sweep.n_common,
        "restricted": sweep.restricted, "missing_points": sweep.missing,
        "points": [{"label": p.label, "kind": p.kind, "warmth": p.warmth, "spec": p.spec, "run": p.run, "x": p.x,
                    "drawn_as": "line" if p.x is None else "point", "n_prompts": p.n_prompts, "n_scored": p.n_scored,
                    "refusals": p.refusals, "seconds": p.seconds} for p in pts],
        "errors": {t: {p.label: {b: cell(belief_rows(_scope(p.frame, t), b)) for b, _ in BELIEF_LEVELS} for p in pts}
                   for t in scopes},
    }
    boots = {t: ItemBootstrap(pts, t) for t in scopes}
    data["belief_effect"] = {t: {p.label: boots[t].belief_effect(p.label) for p in pts} for t in scopes}
    conds = condition_order({c for p in pts for c in p.frame["condition"].unique()})
    base = min(sweep.dial, key=lambda p: abs(p.warmth or 0.0)) if sweep.dial else pts[0]
    heat = {c: {p.label: cell(belief_rows(p.frame[p.frame["condition"] == c], "none")) for p in pts} for c in conds}
    for c in conds:
        ref_rate = heat[c][base.label]["error_rate"]
        for p in pts:
            h = heat[c][p.label]
            h["delta_pp"] = 100 * (h["error_rate"] - ref_rate) if h["n_scored"] and heat[c][base.label]["n_scored"] \
                else math.nan
    data["context_heatmap"] = {"baseline": base.label, "conditions": conds, "columns": [p.label for p in pts],
                               "column_names": [f"{p.warmth:+g}" if p.kind == "dial" else p.label for p in pts],
                               "cells": heat}
    data["regressions"] = dial_regressions(sweep)
    data["comparisons"] = comparisons(sweep, boots)
    data["paper"] = paper_summary(paper_dir, tasks)
    data["meter"] = read_meter(sweep)

    cfg = sweep.config
    lines = ["# Warmth sweep report", "",
             f"Sweep folder: `{sweep_dir}`. Error rates in % with 95% Wilson intervals; differences in percentage "
             "points (pp). Belief levels: *no belief* = original template (plus original_neutral under no context), "
             "*stated wrong belief* = incorrect + correct templates.", "", "## Settings", ""]
    known = ("tasks", "mode", "per_item", "dtype", "vector", "layers", "warmths")
    lines += _table(["setting", "value"], [
        *([k, f"`{json.dumps(cfg.get(k), default=str)}`"] for k in known),
        ["other settings", f"`{json.dumps({k: v for k, v in cfg.items() if k not in known}, default=str)}`"],
        ["points with results", f"{len(pts)} ({len(sweep.dial)} dial, {len(sweep.references)} reference)"],
        ["prompts per point (compared)", str(sweep.n_common)],
        ["seconds (all points' run sessions)", f"{sum(p.seconds for p in pts):.0f}"],
        ["sweep sessions (seconds)", f"{len(sweep.sessions)} "
         f"({sum(float(x.get('seconds', 0.0)) for x in sweep.sessions if isinstance(x, dict)):.0f})"],
    ])
    if sweep.missing:
        lines += [f"Points without results yet (left out): {', '.join(sweep.missing)}.", ""]
    if sweep.restricted:
        lines += [f"The points scored different prompt sets; every table and plot is restricted to the "
                  f"{sweep.n_common} prompts all of them scored, so rates compare like with like.", ""]
    lines += ["## Points", ""]
    lines += _table(["label", "kind", "warmth", "dial position", "spec", "prompts (whole run)", "scored (compared)",
                     "refusals (compared)", "seconds"],
                    ([p.label, p.kind, _num(p.warmth, "+g"), _num(p.x, "+g") if p.x is not None else "- (line)",
                      f"`{p.spec}`", str(p.n_prompts), str(cell(p.frame)["n_scored"]), str(cell(p.frame)["refusals"]),
                      f"{p.seconds:.0f}"] for p in pts))
    names = [p.label for p in pts]
    for belief, bname in BELIEF_LEVELS:
        lines += [f"## Error rate per task x point: {bname}", ""]
        lines += _table(["task", *names], ([t, *(_fmt(data["errors"][t][n][belief]) for n in names)] for t in scopes))
    lines += ["## Belief effect (sycophancy) per task x point", "",
              "Error with a stated wrong belief minus without, pp, [95% percentile interval of a bootstrap over "
              f"items, {BOOTSTRAP} resamples; an item is resampled with all its prompts, so the two rates' "
              "correlation within items is kept].", ""]
    lines += _table(["task", *names], ([t, *(_pp(data["belief_effect"][t][n]) for n in names)] for t in scopes))
    lines += ["## Context x point (no belief, tasks pooled)", "",
              f"Error rate % [95% Wilson] and, in parentheses, the change in pp from {base.label}.", ""]
    lines += _table(["context", *names], ([c, *(f"{_fmt(heat[c][n])} ({_num(heat[c][n]['delta_pp'], '+.1f')})"
                                                for n in names)] for c in conds))
    if data["meter"]:
        lines += ["## Warmth meter and coherence", "",
                  "p(warm): a classifier's probability that an answer is warm (mean +- SE); NLL: the base model's mean "
                  "negative log-likelihood per token of the point's answers (nats; a coherence cost).", ""]
        lines += _table(["label", "kind", "dial position", "p(warm)", "NLL", "n"],
                        ([m.get("label", "?"), m["kind"], _num(m.get("x"), "+g"),
                          f"{_num(m.get('p_warm'), '.3f')} +- {_num(m.get('p_warm_se'), '.3f')}",
                          f"{_num(m.get('nll'), '.3f')} +- {_num(m.get('nll_se'), '.3f')}", str(m.get("n", "?"))]
                         for m in data["meter"]))
    lines += ["## Regression effects of warmth (per unit of dial)", "",
              "Logits over the dial points' scored prompts; the effect is the average marginal effect of warmth, the "
              "mean derivative of the error probability per unit of dial (pp), delta-method 95% CI with standard "
              "errors clustered by item. `interaction` gives it per belief level and their difference (warmth's "
              "extra cost when a wrong belief is stated).", ""]
    rows = []
    for r in data["regressions"]:
        if not r["effects"]:
            rows.append([r["model"], r["side_desc"], "-", str(r["n"]), "n/a", "", "", r["error"] or ""])
        for level, e in r["effects"].items():
            rows.append([r["model"], r["side_desc"], level, str(e["n"]), _num(e["ame_pp"]),
                         f"{_num(e['ci_low_pp'])} to {_num(e['ci_high_pp'])}", _p(e["p"]), r["error"] or ""])
    lines += _table(["model", "dial points", "level", "n", "AME pp / unit", "95% CI", "p", "note"], rows)
    lines += ["Formulas: " + "; ".join(sorted({f"{r['model']}: `{r['formula']}`" for r in data["regressions"]
                                               if r["side"] == "all"})), ""]
    lines += ["## Steered vs fine-tuned (paired, against warmth 0)", ""]
    if not data["comparisons"]:
        lines += ["No comparison: the sweep has no warmth 0 point or no reference.", ""]
    else:
        lines += ["Each target against the warmth 0 point on the prompts both scored. delta = target - warmth 0 "
                  "(pp, all tasks and contexts pooled) with McNemar's p; AMEs from compare's models (model 1: no "
                  "context, no belief; model 4 by belief level), 95% CI; sycophancy change = change of the belief "
                  "effect, with its item-bootstrap 95% CI.", ""]
        lines += _table(["target", "kind", "pairs", "delta no belief (p)", "delta belief (p)", "AME model 1",
                         "AME no belief", "AME belief", "sycophancy change"],
                        ([c["target"], c["kind"] + (f" ({c['side']})" if c["side"] else ""), str(c["n_pairs"]),
                          f"{_num(c['delta']['none']['delta_pp'], '+.1f')} ({_p(c['delta']['none']['p'])})",
                          f"{_num(c['delta']['stated']['delta_pp'], '+.1f')} ({_p(c['delta']['stated']['p'])})",
                          _pp(c["ame"]["model 1"], "ame_pp"), _pp(c["ame"]["no belief"], "ame_pp"),
                          _pp(c["ame"]["belief"], "ame_pp"), _pp(c["belief_effect_change"])]
                         for c in data["comparisons"]))
    lines += ["## The paper's published numbers", ""]
    paper = data["paper"]
    if not paper["available"]:
        lines += [f"Not available: {'; '.join(paper['notes'])}. The comparison with the paper is skipped.", ""]
    else:
        lines += [f"From `{paper['dir']}` (read only). Error change = minus the paper's accuracy change (Raw Diff), "
                  "pp; mean over all models' rows [range of the per-model means]; no context = the unmodified rows, "
                  "all contexts = every context row (mean over contexts); test type Normal = no belief, Sycophancy = "
                  "stated wrong belief. Ours: delta vs warmth 0 on the paired prompts." +
                  (f" Notes: {'; '.join(paper['notes'])}." if paper["notes"] else ""), ""]
        ours = [c for c in data["comparisons"] if c["side"]]
        header = ["task", "belief", "scope", *(PAPER_FILES[s][1] for s in PAPER_FILES),
                  *(f"ours: {c['target']}" for c in ours)]
        prow = []
        for t in scopes:
            for belief, bname in BELIEF_LEVELS:
                for scope, _ in SCOPES:
                    cells = []
                    for s in PAPER_FILES:
                        r = _paper_row(paper, s, t, belief, scope)
                        cells.append("n/a" if r is None else
                                     f"{r['mean_pp']:+.1f} [{r['model_min_pp']:+.1f}, {r['model_max_pp']:+.1f}]")
                    if all(x == "n/a" for x in cells):
                        continue
                    prow.append([t, bname, scope, *cells,
                                 *(_num(c["per_task"][t][scope][belief], "+.1f") for c in ours)])
        lines += _table(header, prow)
    return lines, data


def write_sweep_report(sweep_dir: Path, out_dir: Path | None = None, paper_dir: Path | None = None) -> dict[str, Path]:
    """Write report.md, report.json and the PNGs for a sweep folder; returns their paths by name ("markdown",
    "json", and each plot's file stem)."""
    sweep_dir = Path(sweep_dir)
    out_dir = Path(out_dir) if out_dir is not None else sweep_dir / "report"
    lines, data = build_sweep_report(sweep_dir, Path(paper_dir) if paper_dir is not None else None)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / "report.md", "json": out_dir / "report.json"}
    plots = [("errors-vs-warmth", plot_errors, "Error rate vs warmth"),
             ("belief-effect-vs-warmth", plot_belief_effect, "Belief effect vs warmth"),
             ("context-warmth-heatmap", plot_heatmap, "Context x warmth")]
    if data["meter"]:
        plots.append(("meter-vs-warmth", plot_meter, "Warmth meter and NLL vs warmth"))
    lines += ["## Plots", ""]
    for stem, fn, title in plots:
        paths[stem] = fn(data, out_dir / f"{stem}.png")
        lines += [f"![{title}]({stem}.png)", ""]
    concl = conclusion(data)
    data["conclusion"] = concl
    lines += ["## Conclusion", "",
              "Rules: an effect is present when its 95% CI excludes 0 (else: not detectable); steering counts as "
              "reproducing a fine-tune on a measure when the fine-tune's effect lies inside the 95% CI of the "
              "steered effect at the fine-tune's dial position (+1 warm, -1 cold) and the two are not both present "
              "with opposite signs; a measure fails when either condition fails. Our effects are inside or outside "
              "the paper's range when they lie within or beyond its per-model means. Every sentence below is "
              "generated from the numbers above.", "", *(f"- {s}" for s in concl), ""]
    paths["markdown"].write_text("\n".join(lines))
    paths["json"].write_text(json.dumps(_clean(data), indent=2, default=str) + "\n")
    return paths
