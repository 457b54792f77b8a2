"""An honest instrument: can a run's target show an effect on a task at all, how large must an effect be to be seen,
and which items does the reference know.

1. Instrument check, per task: the target's accuracy on the neutral prompts (templates `original` and
   `original_neutral` under no context: no context, no stated belief) with a 95% Wilson interval over those
   prompts, against chance and against a trivial rule that needs no model, "pick the shorter answer" (the share of
   items whose correct reply, as `bench.replies` builds it, is shorter in characters than the wrong one; a tie
   counts one half). Chance: 1/2 in likelihood mode (two replies); in generate mode 1/k for MedQA (k = the item's
   options, averaged over items) and not defined for open answers (trivia, truthfulqa, disinfo). The shorter-answer
   rule is a two-reply rule: it is a baseline in likelihood mode only. A task **cannot measure an effect** when
   the lower end of the accuracy's interval does not exceed every defined baseline: its errors are then not
   distinguishable from guessing or a length heuristic, and a change in them says nothing about warmth. Open
   answers without a baseline cannot measure one either when that lower end is 0% (a target that may never be
   right cannot err more); otherwise their verdict is "no baseline".
2. Minimum detectable effect (MDE, pp, 80% power, two-sided 5% level) of the paired designs, from
   `stats.mcnemar_mde` (formula there): a comparison of two targets on the same prompts (discordance measured on
   a pair of runs, or, for one run, assumed: two targets erring independently at this run's rate, which is
   conservative), and the belief effect within one target (each belief prompt paired with the no-belief prompt of
   the same item and condition: `original_neutral` under no context, `original` under a context; discordance
   measured). `plan_items` inverts it. McNemar treats pairs as independent; one item's prompts are not, so where
   the pairs are measured the MDE is also given clustered by item (`item_design_effect`).
3. Known items (as MASK keeps the facts a model knows): the items the reference answers correctly with a margin in
   EVERY neutral prompt: likelihood mode, lp_correct - lp_wrong > `DEFAULT_MARGIN` (mean log-prob per token of
   the differing span, nats; 0.1 means the correct reply's per-token probability is at least e^0.1 = 1.105 times
   the wrong one's, so a near tie does not count as knowing); generate mode (or a likelihood run without recorded
   log-probs), judged correct in every neutral prompt. An item without a scored neutral prompt is not known.
   Selection caveat (`known_items_caveat`, printed under every known-items heading): the reference's neutral prompts
   are right on its known items by construction, so against the reference a change there cannot be negative and
   changes elsewhere lean positive (regression to the mean).

Invariants: every function is a pure function of the frames (summary.records_frame columns, plus lp_correct and
lp_wrong where recorded) and items it is given; item files are read only through a run's run.json descriptor and
only when their sha256 matches, so a baseline is never computed from other items than the run scored.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steerwarm.bench.contexts import UNMODIFIED
from steerwarm.bench.frames import belief_rows
from steerwarm.bench.items import Item, load_items
from steerwarm.bench.prompts import BELIEF_TEMPLATES
from steerwarm.bench.replies import replies
from steerwarm.bench.stats import independent_discordance, mcnemar_mde, mcnemar_n, wilson
from steerwarm.bench.store import RunStore
from steerwarm.paths import default_items, shared_data, source_checkout, steerwarm_home

if TYPE_CHECKING:
    import pandas as pd

NEUTRAL_TEMPLATES = ("original", "original_neutral")
DEFAULT_MARGIN = 0.1
POWER = 0.80
ALPHA = 0.05
OPEN_ANSWER_TASKS = ("trivia", "truthfulqa", "disinfo")


def neutral_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The neutral prompts: templates original and original_neutral under no context (no context, no belief)."""
    return df[(df["condition"] == UNMODIFIED) & df["template"].isin(NEUTRAL_TEMPLATES)]


def _pct(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.1f}%"


def _num(x: float | None, fmt: str = ".1f") -> str:
    return "n/a" if x is None or math.isnan(x) else format(x, fmt)


# -- baselines ------------------------------------------------------------------------------------------------------
def chance_accuracy(task: str, mode: str, items: Sequence[Item] = ()) -> tuple[float | None, str]:
    """(chance accuracy or None, how it is defined); see the module doc."""
    if mode == "likelihood":
        return 0.5, "1/2: two replies"
    if task == "medqa":
        ks = [len(it.options) for it in items if it.options]
        if ks:
            return sum(1 / k for k in ks) / len(ks), f"1/k over the items' options (k = {min(ks)}-{max(ks)})"
        return 0.2, "1/5: MedQA's five options (assumed; the item file was not read)"
    return None, "not defined for open answers"


def shorter_answer_accuracy(items: Sequence[Item]) -> float:
    """Accuracy of the rule "pick the shorter of the correct and the wrong reply" (characters; a tie scores 1/2)."""
    if not items:
        return math.nan
    score = 0.0
    for it in items:
        right, wrong = (len(r) for r in replies(it))
        score += 1.0 if right < wrong else 0.5 if right == wrong else 0.0
    return score / len(items)


def _candidates(shown: str, task: str) -> list[Path]:
    for label, base in (("$STEERWARM_SHARED_DATA/", shared_data), ("$STEERWARM_HOME/", steerwarm_home)):
        if shown.startswith(label):
            return [base() / shown[len(label):]]
    p = Path(shown)
    if p.is_absolute():
        return [p]
    checkout = source_checkout()
    return [*([checkout / p] if checkout else []), Path.cwd() / p, default_items(task)]


def run_items(store: RunStore) -> tuple[dict[str, list[Item]], list[str]]:
    """The items a run scored, per task, read from the item files its run.json names (display paths resolved as
    `paths.display` wrote them) and kept only when the file's sha256 matches the one recorded; (items, notes on
    what could not be read)."""
    run = store.read_run() or {}
    cfg = run.get("config", {})
    seed = int(cfg.get("seed", 0) or 0)
    out: dict[str, list[Item]] = {}
    notes: list[str] = []
    for task, desc in (cfg.get("items") or {}).items():
        shown, sha = str(desc.get("path", "")), desc.get("sha256")
        found = next((c for c in _candidates(shown, task) if c.is_file()
                      and hashlib.sha256(c.read_bytes()).hexdigest()[:16] == sha), None)
        if found is None:
            notes.append(f"{task}: item file {shown} (sha256 {sha}) not found here")
            continue
        out[task] = load_items(task, found, seed=seed).items
    return out, notes


# -- 1. instrument check --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskInstrument:
    task: str
    mode: str
    n_items: int
    n_prompts: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    chance: float | None
    chance_rule: str
    shorter: float | None
    shorter_rule: str
    can_measure: bool | None  # None: no baseline is defined (open answers)
    reason: str

    @property
    def verdict(self) -> str:
        return {True: "can measure", False: "CANNOT measure an effect", None: "no baseline"}[self.can_measure]

    def record(self) -> dict[str, Any]:
        return {"task": self.task, "mode": self.mode, "n_items": self.n_items, "n_prompts": self.n_prompts,
                "correct": self.correct, "accuracy": self.accuracy, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "chance": self.chance, "chance_rule": self.chance_rule, "shorter_answer": self.shorter,
                "shorter_answer_rule": self.shorter_rule, "can_measure": self.can_measure,
                "verdict": self.verdict, "reason": self.reason}

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> TaskInstrument:
        return cls(r["task"], r["mode"], r["n_items"], r["n_prompts"], r["correct"], r["accuracy"], r["ci_low"],
                   r["ci_high"], r["chance"], r["chance_rule"], r["shorter_answer"], r["shorter_answer_rule"],
                   r["can_measure"], r["reason"])

    def line(self) -> str:
        """One line for a terminal or a report."""
        return (f"{self.task}: accuracy {_pct(self.accuracy)} [{_pct(self.ci_low)}-{_pct(self.ci_high)}] on "
                f"{self.n_prompts} neutral prompts ({self.n_items} items); chance {_pct(self.chance)}, shorter "
                f"answer {_pct(self.shorter)}: {self.verdict}. {self.reason}")


def task_instrument(task: str, mode: str, neutral: pd.DataFrame, items: Sequence[Item] | None) -> TaskInstrument:
    """The instrument check of one task from its neutral prompts (scored ones count; refusals dropped)."""
    scored = neutral[neutral["is_incorrect"].notna()]
    n = len(scored)
    k = int(n - scored["is_incorrect"].sum())
    lo, hi = wilson(k, n)
    acc = k / n if n else math.nan
    ids = set(neutral["item_id"])
    used = [it for it in items or () if it.item_id in ids]
    chance, chance_rule = chance_accuracy(task, mode, used)
    if mode != "likelihood":
        shorter, shorter_rule = None, "not a baseline of generated answers (a two-reply rule)"
    elif items is None:
        shorter, shorter_rule = None, "not computed: the run's item file was not found"
    else:
        shorter, shorter_rule = shorter_answer_accuracy(used), "shorter of the two replies, characters"
    floors = [(v, name) for v, name in ((chance, "chance"), (shorter, "the shorter-answer rule")) if v is not None
              and not math.isnan(v)]
    verdict: bool | None
    if n == 0:
        verdict, reason = False, "No neutral prompt (original / original_neutral without context) was scored."
    elif not floors and lo <= 0.0:
        verdict, reason = False, ("No chance level is defined for open answers, and the accuracy's 95% interval "
                                  "reaches 0%: the target may never answer right, so its errors cannot rise to "
                                  "show an effect.")
    elif not floors:
        verdict, reason = None, "No chance level is defined for open answers; judge the accuracy on its own."
    else:
        beaten = [name for v, name in floors if lo <= v]
        if beaten:
            verdict = False
            what = " or ".join({"chance": "guessing", "the shorter-answer rule": "a length heuristic"}[b]
                               for b in beaten)
            reason = (f"The accuracy's 95% interval does not lie above {' and '.join(beaten)} "
                      f"({', '.join(_pct(v) for v, name in floors if name in beaten)}): its answers cannot be told "
                      f"from {what}, so a change in its errors is no evidence of an effect.")
        else:
            verdict = True
            reason = f"The accuracy's 95% interval lies above {' and '.join(name for _, name in floors)}."
    return TaskInstrument(task, mode, len(ids), n, k, acc, lo, hi, chance, chance_rule, shorter, shorter_rule,
                          verdict, reason)


def instrument_check(df: pd.DataFrame, mode: str, items: dict[str, list[Item]] | None = None
                     ) -> list[TaskInstrument]:
    """Per task of the frame, in task order; `items` by task (missing tasks: no shorter-answer baseline)."""
    if df.empty:
        return []
    neutral = neutral_rows(df)
    return [task_instrument(task, mode, neutral[neutral["task"] == task], (items or {}).get(task))
            for task in sorted(df["task"].unique())]


def run_mode(store: RunStore, df: pd.DataFrame | None = None) -> str:
    """A run's scoring mode: run.json's, else "likelihood" when its records carry log-probs, else "generate"."""
    cfg = (store.read_run() or {}).get("config", {})
    if cfg.get("mode"):
        return str(cfg["mode"])
    has_lp = df is not None and "lp_correct" in df and bool(df["lp_correct"].notna().any())
    return "likelihood" if has_lp else "generate"


# -- 2. minimum detectable effects ----------------------------------------------------------------------------------
DESIGNS = (("no context, no belief", "neutral"), ("no belief", "none"), ("stated belief", "stated"),
           ("all prompts", "all"))


def design_rows(df: pd.DataFrame, design: str) -> pd.DataFrame:
    """The prompts of one design of DESIGNS: "neutral", a belief level of frames.belief_rows, or "all"."""
    if design == "neutral":
        return neutral_rows(df)
    return df if design == "all" else belief_rows(df, design)


def _mde_entry(name: str, n: int, psi: float, source: str, deff: float = math.nan) -> dict[str, Any]:
    mde = mcnemar_mde(n, psi, alpha=ALPHA, power=POWER) if n else math.nan
    item = 100 * mde * math.sqrt(deff) if not (math.isnan(mde) or math.isnan(deff)) else math.nan
    return {"design": name, "n_pairs": n, "discordance": psi, "discordance_source": source,
            "mde_pp": 100 * mde if not math.isnan(mde) else math.nan, "item_design_effect": deff,
            "mde_items_pp": item}


def item_design_effect(pairs: pd.DataFrame) -> float:
    """How much the prompts of one item move together in a paired comparison (columns task, item_id, a, b): with
    d = b - a per pair and D_i its sum over item i's n_i pairs, DEFF = sum_i (D_i - n_i mean(d))^2 /
    sum (d - mean(d))^2, the variance of the mean difference clustered by item over its variance for independent
    pairs (1 for independent prompts, up to the prompts per item when they always agree). The MDE clustered by
    item is the McNemar MDE times sqrt(DEFF) (`mde_items_pp`); NaN without a discordant pair."""
    d = pairs["b"].astype(int) - pairs["a"].astype(int)
    centred = d - float(d.mean()) if len(d) else d
    denom = float((centred * centred).sum())
    if denom == 0:
        return math.nan
    per_item = centred.groupby([pairs["task"], pairs["item_id"]]).sum()
    return float((per_item * per_item).sum()) / denom


def design_mdes(df: pd.DataFrame, measure: Callable[[pd.DataFrame], tuple[int, float, str, float]]
                ) -> list[dict[str, Any]]:
    """MDE per task and design of DESIGNS, `measure` giving (pairs, discordance, its source, the item design effect
    or NaN) of a design's rows; a
    design that holds no more prompts than the one it contains (neutral within no belief within all) is left out,
    as it would repeat that one's row."""
    out = []
    for task in sorted(df["task"].unique()):
        t = df[df["task"] == task]
        inner = 0
        for name, design in DESIGNS:
            sub = design_rows(t, design)
            if sub.empty or (design in ("none", "all") and len(sub) == inner):
                continue
            if design != "stated":
                inner = len(sub)
            out.append({"task": task, **_mde_entry(name, *measure(sub))})
    return out


def comparison_mde(df: pd.DataFrame) -> list[dict[str, Any]]:
    """MDE of a future paired comparison of this run's target with another on the same prompts, per task and
    design; discordance assumed (independent errors at this run's error rate, `stats.independent_discordance`)."""
    def assumed(sub: pd.DataFrame) -> tuple[int, float, str, float]:
        p = float(sub["is_incorrect"].mean())
        return len(sub), independent_discordance(p), f"assumed: independent errors at {_pct(p)}", math.nan

    return design_mdes(df[df["is_incorrect"].notna()], assumed)


def belief_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Each scored belief prompt with the no-belief prompt of the same item and condition (its control:
    original_neutral under no context, original under a context): columns task, item_id, condition, a (control
    is_incorrect), b (belief is_incorrect)."""
    scored = df[df["is_incorrect"].notna()]
    control = scored[((scored["template"] == "original_neutral") & (scored["condition"] == UNMODIFIED)) |
                     ((scored["template"] == "original") & (scored["condition"] != UNMODIFIED))]
    belief = scored[scored["template"].isin(BELIEF_TEMPLATES)]
    keys = ["task", "item_id", "condition"]
    pairs = belief[[*keys, "is_incorrect"]].merge(control[[*keys, "is_incorrect"]], on=keys,
                                                  suffixes=("_b", "_a"))
    return pairs.assign(a=pairs["is_incorrect_a"].astype(int), b=pairs["is_incorrect_b"].astype(int))[
        [*keys, "a", "b"]]


def discordance(a: Iterable[int], b: Iterable[int]) -> tuple[int, float]:
    """(pairs, share of pairs whose two outcomes differ)."""
    xs = list(zip(a, b, strict=True))
    return len(xs), (sum(x != y for x, y in xs) / len(xs) if xs else math.nan)


def belief_effect_mde(df: pd.DataFrame) -> list[dict[str, Any]]:
    """MDE of the belief effect within one target per task (pairs of `belief_pairs`, discordance measured)."""
    pairs = belief_pairs(df)
    out = []
    for task in sorted(pairs["task"].unique()):
        t = pairs[pairs["task"] == task]
        n, psi = discordance(t["a"], t["b"])
        out.append({"task": task, **_mde_entry("belief effect (belief vs its no-belief control)", n, psi,
                                               "measured", item_design_effect(t))})
    return out


def paired_mde(pairs: pd.DataFrame) -> list[dict[str, Any]]:
    """MDE of a paired comparison that was run (compare.pair_frames: columns a, b), per task and design, with the
    discordance measured on the pairs."""
    return design_mdes(pairs, lambda sub: (*discordance(sub["a"], sub["b"]), "measured", item_design_effect(sub)))


@dataclass(frozen=True)
class Plan:
    """Items and prompts a run needs per task to detect `effect_pp` with 80% power."""

    task: str
    effect_pp: float
    error: float
    error_source: str
    discordance: float
    discordance_source: str
    designs: list[dict[str, Any]] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {"task": self.task, "effect_pp": self.effect_pp, "error": self.error, "error_source": self.error_source,
                "discordance": self.discordance, "discordance_source": self.discordance_source,
                "designs": self.designs}


def plan_items(task: str, effect_pp: float, error: float, error_source: str, cells: Sequence[tuple[str, str]],
               discordance_rate: float | None = None) -> Plan:
    """Pairs, items and prompts needed to detect +effect_pp (80% power, two-sided 5%) in three designs: the no
    context, no belief cell (prompts per item: the grid's neutral cells), one context cell of the original template
    (one prompt per item: the per-context effects such as sadness's) and every prompt of the grid pooled. `cells`
    are the grid's (template, condition) pairs (prompts.grid_cells). Discordance: given, else independent errors at
    `error` and `error + effect` (conservative)."""
    d = effect_pp / 100
    if discordance_rate is None:
        psi, source = independent_discordance(error, d), f"assumed: independent errors at {_pct(error)} and " \
                                                         f"{_pct(min(1.0, error + d))}"
    else:
        psi, source = discordance_rate, "given"
    per_item = {"no context, no belief": sum(1 for t, c in cells if t in NEUTRAL_TEMPLATES and c == UNMODIFIED),
                "one context, original template": 1 if any(t == "original" for t, _ in cells) else 0,
                "all prompts of the grid": len(cells)}
    designs = []
    for name, k in per_item.items():
        if k == 0:
            continue
        try:
            n = mcnemar_n(d, psi, alpha=ALPHA, power=POWER)
        except ValueError as exc:
            designs.append({"design": name, "prompts_per_item": k, "error": str(exc)})
            continue
        items = math.ceil(n / k)
        designs.append({"design": name, "prompts_per_item": k, "pairs": n, "items": items,
                        "prompts": items * len(cells)})
    return Plan(task, effect_pp, error, error_source, psi, source, designs)


# -- 3. known items -------------------------------------------------------------------------------------------------
def known_items_caveat(chooser: str) -> str:
    """The selection caveat printed under every known-items heading; `chooser` names whose answers chose the items
    (the reference run, a comparison's A, a sweep's baseline point)."""
    return (f"The known items are chosen by {chooser}'s own answers, so on them its neutral prompts (no context, no "
            f"belief) are right by construction: against {chooser}, a change in that scope cannot be negative, and "
            "changes in the other scopes lean positive too (regression to the mean). Compare the other targets with "
            "each other here (a warm target against a cold one), or read the all-items numbers.")


@dataclass(frozen=True)
class KnownItems:
    """The items (task, item_id) the reference knows; `per_task` holds (known, items with a neutral prompt)."""

    keys: frozenset[tuple[str, str]]
    per_task: dict[str, tuple[int, int]]
    rule: str

    @property
    def n(self) -> int:
        return len(self.keys)

    def record(self) -> dict[str, Any]:
        return {"rule": self.rule, "n_known": self.n,
                "per_task": {t: {"known": k, "items": n} for t, (k, n) in self.per_task.items()},
                "items": sorted(f"{t}\x1f{i}" for t, i in self.keys)}

    def text(self) -> str:
        parts = ", ".join(f"{t} {k}/{n}" for t, (k, n) in self.per_task.items())
        return f"{self.n} known items ({parts}); rule: {self.rule}"

    def restrict(self, df: pd.DataFrame) -> pd.DataFrame:
        """The rows of a frame (columns task, item_id) whose item is known."""
        if df.empty:
            return df
        mask = [(t, i) in self.keys for t, i in zip(df["task"], df["item_id"], strict=True)]
        return df[mask]


def known_items(df: pd.DataFrame, mode: str, margin: float = DEFAULT_MARGIN) -> KnownItems:
    """The module doc's known items of a reference run's frame."""
    neutral = neutral_rows(df)
    use_lp = (mode == "likelihood" and "lp_correct" in neutral and "lp_wrong" in neutral
              and bool(neutral["lp_correct"].notna().all()) and not neutral.empty)
    if use_lp:
        ok = (neutral["lp_correct"].astype(float) - neutral["lp_wrong"].astype(float)) > margin
        rule = (f"lp_correct - lp_wrong > {margin:g} (mean log-prob per token) in every neutral prompt "
                "(original, original_neutral; no context)")
    else:
        ok = neutral["is_incorrect"] == 0
        rule = "judged correct in every neutral prompt (original, original_neutral; no context)" + (
            "; no log-probs recorded, so no margin" if mode == "likelihood" else "")
    frame = neutral.assign(ok=ok.to_numpy(bool))
    every = frame.groupby(["task", "item_id"])["ok"].all()
    keys = frozenset((str(t), str(i)) for (t, i), v in every.items() if v)
    per_task = {str(t): (sum(1 for kt, _ in keys if kt == t), int((every.index.get_level_values(0) == t).sum()))
                for t in sorted(frame["task"].unique())}
    return KnownItems(keys, per_task, rule)


# -- for one run ----------------------------------------------------------------------------------------------------
def run_instrument(store: RunStore, df: pd.DataFrame, margin: float = DEFAULT_MARGIN) -> dict[str, Any]:
    """The instrument block of a run's summary.json: per-task check, MDEs and the known items (see module doc)."""
    mode = run_mode(store, df)
    items, notes = run_items(store)
    checks = instrument_check(df, mode, items)
    known = known_items(df, mode, margin)
    return {"mode": mode, "tasks": {c.task: c.record() for c in checks}, "notes": notes,
            "mde": {"comparison": comparison_mde(df), "belief_effect": belief_effect_mde(df),
                    "power": POWER, "alpha": ALPHA},
            "known_items": {k: v for k, v in known.record().items() if k != "items"}}


def cannot_measure(block: dict[str, Any]) -> list[str]:
    """Tasks of an instrument block (`run_instrument`) flagged as unable to measure an effect."""
    return [t for t, c in block.get("tasks", {}).items() if c.get("can_measure") is False]


def instrument_markdown(checks: Sequence[TaskInstrument], mde: Sequence[dict[str, Any]] = ()) -> list[str]:
    """Markdown lines of the instrument section (shared by bench compare, bench report and the sweep report)."""
    lines = ["| task | neutral prompts (items) | accuracy [95% CI] | chance | shorter answer | verdict |",
             "|---|---|---|---|---|---|"] if checks else []
    for c in checks:
        lines.append(f"| {c.task} | {c.n_prompts} ({c.n_items}) | {_pct(c.accuracy)} [{_pct(c.ci_low)}-"
                     f"{_pct(c.ci_high)}] | {_pct(c.chance)} | {_pct(c.shorter)} | "
                     f"{'**' + c.verdict + '**' if c.can_measure is False else c.verdict} |")
    if checks:
        lines += ["", *(f"- {c.task}: {c.reason}" for c in checks), ""]
    if mde:
        lines += ["Minimum detectable effect (pp; 80% power, two-sided 5% level, McNemar normal approximation with "
                  "continuity correction, Connor 1987; pairs assumed independent, so with several prompts per item "
                  "the true MDE is larger; where measured, the MDE clustered by item is the MDE times the square root "
                  "of the item design effect, `item_design_effect`):", "",
                  "| task | design | pairs | discordance | source | MDE pp | item design effect | MDE by item pp |",
                  "|---|---|---|---|---|---|---|---|"]
        for m in mde:
            v, deff, vi = m["mde_pp"], m.get("item_design_effect", math.nan), m.get("mde_items_pp", math.nan)
            lines.append(f"| {m['task']} | {m['design']} | {m['n_pairs']} | {_pct(m['discordance'])} | "
                         f"{m['discordance_source']} | {_num(v)} | {_num(deff, '.2f')} | {_num(vi)} |")
        lines.append("")
    return lines
