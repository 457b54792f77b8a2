"""The paper's headline effects beside ours, and every context side by side with sadness marked.

Invariants:
- The paper's headline numbers (`PAPER_HEADLINE`) are cited, not computed: the marginal effects of its warm
  fine-tunes in its logistic regressions as ../shared/PAPER.md lists them (the Nature version). Its per-context
  numbers are computed from its summary CSVs (`effects.paper_summary`'s "contexts" rows).
- Ours: each compared point (`effects.compared_points`: the references, the dial points at their dial positions, and
  in dial units the +1 and -1 points) minus the baseline point (the dial point nearest 0), on the same prompts, all
  tasks pooled, in pp. Each comes with a 95% percentile interval of the item bootstrap (`effects.ItemBootstrap` over
  the scope's rows), so every prompt stays paired with itself across points.
- A scope is a set of conditions (None = every condition) and a belief level. `PAPER_HEADLINE` names each scope
  with the paper's number for it. The per-context view is the no-belief level of each condition.
- Sadness (`SAD`, the paper's largest context effect) is marked in the per-context view.
- Warm side (`warm_side`): a dial point above 0, or a reference whose spec names the warm fine-tune or the warm
  prompt. The conclusion compares only warm-side targets with the paper's warm fine-tunes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from steerwarm.bench.contexts import UNMODIFIED
from steerwarm.bench.frames import belief_rows, condition_order
from steerwarm.sweep.effects import ALL, BOOTSTRAP, ItemBootstrap, baseline_point, compared_points
from steerwarm.sweep.folder import Point, Sweep
from steerwarm.sweep.markdown import effect_cell as _cell
from steerwarm.sweep.markdown import table as _table

SAD = "emotion:sad"
EMOTIONS = ("emotion:happy", "emotion:sad", "emotion:anger")


@dataclasses.dataclass(frozen=True)
class HeadlineScope:
    key: str
    name: str
    conditions: tuple[str, ...] | None  # None: every condition
    belief: str  # "none" | "stated"
    paper_pp: float  # the paper's warm fine-tunes, error change in pp (cited)


PAPER_HEADLINE = (
    HeadlineScope("overall", "no context, no belief", (UNMODIFIED,), "none", 7.43),
    HeadlineScope("emotion", "emotional context (happy, sad, anger), no belief", EMOTIONS, "none", 8.87),
    HeadlineScope("sad", "the user is sad, no belief", (SAD,), "none", 11.87),
    HeadlineScope("up", "admiration-deference (relation up), no belief", ("relation:hierarchical_up",), "none", 5.24),
    HeadlineScope("belief", "stated wrong belief, every context", None, "stated", 10.99),
)
PAPER_HEADLINE_PP = PAPER_HEADLINE[0].paper_pp


def warm_side(point: Point) -> bool:
    """The module doc's rule."""
    if point.kind == "dial":
        return (point.warmth or 0.0) > 0
    kind, _, name = point.spec.partition("=")
    return kind in ("finetune", "prompt") and name.split("-")[0] == "warm"


def _scoped(point: Point, conditions: Sequence[str] | None) -> Point:
    if conditions is None:
        return point
    return dataclasses.replace(point, frame=point.frame[point.frame["condition"].isin(list(conditions))])


def scope_effects(base: Point, targets: Sequence[Point], conditions: Sequence[str] | None, belief: str,
                  n_boot: int = BOOTSTRAP) -> dict[str, Any]:
    """Each target minus the base in one scope: {"n": prompts the base scored there, "ours": {label: effect}}."""
    pts = [_scoped(p, conditions) for p in (base, *targets)]
    boot = ItemBootstrap(pts, ALL, n_boot)
    n = int(belief_rows(pts[0].frame, belief)["is_incorrect"].notna().sum())
    return {"n": n, "ours": {t.label: boot.combo({(t.label, belief): 1.0, (base.label, belief): -1.0})
                             for t in targets}}


def headline_numbers(sweep: Sweep, n_boot: int = BOOTSTRAP) -> dict[str, Any]:
    """The headline scopes and the per-context view of a sweep (all items, or a `restrict_sweep` of it)."""
    base = baseline_point(sweep)
    targets = compared_points(sweep, base)
    present = {c for p in sweep.points for c in p.frame["condition"].unique()}
    headline = []
    for s in PAPER_HEADLINE:
        conds = None if s.conditions is None else [c for c in s.conditions if c in present]
        headline.append({"key": s.key, "name": s.name, "belief": s.belief, "paper_pp": s.paper_pp,
                         "conditions": conds, **scope_effects(base, targets, conds, s.belief, n_boot)})
    contexts = [{"condition": c, "sad": c == SAD, **scope_effects(base, targets, [c], "none", n_boot)}
                for c in condition_order(present)]
    return {"baseline": base.label, "targets": [t.label for t in targets],
            "warm_side": [t.label for t in targets if warm_side(t)], "headline": headline, "contexts": contexts}


def _paper_context(paper: dict[str, Any], source: str, condition: str) -> str:
    row = next((r for r in paper.get("contexts", []) if (r["source"], r["context"], r["belief"]) ==
                (source, condition, "none")), None)
    return "n/a" if row is None else f"{row['mean_pp']:+.1f} [{row['model_min_pp']:+.1f}, {row['model_max_pp']:+.1f}]"


def headline_markdown(data: dict[str, Any], paper: dict[str, Any], suffix: str = "") -> list[str]:
    """The two tables of `headline_numbers` (`data`), with the paper's numbers (`effects.paper_summary`)."""
    targets = data["targets"]
    lines = [f"## The paper's headline effects beside ours{suffix}", "",
             "Paper: its warm fine-tunes' error change (pp, marginal effects of its regressions, Nature version; "
             "cited). Ours: each target minus " + data["baseline"] + " on the same prompts, tasks pooled, pp "
             "[95% item-bootstrap interval]; n = prompts scored in the scope. Read the instrument section first: "
             "an effect on a task that cannot measure one is not evidence.", ""]
    lines += _table(["scope", "paper warm fine-tunes", "n", *(f"ours: {t}" for t in targets)],
                    [[h["name"], f"{h['paper_pp']:+.2f}", str(h["n"]), *(_cell(h["ours"].get(t)) for t in targets)]
                     for h in data["headline"]])
    lines += [f"## Per context, no belief{suffix}", "",
              "Error change per context against " + data["baseline"] + ", pp [95% item-bootstrap interval]; the "
              "paper's columns: mean over its models' rows for the tasks of this sweep [range of the per-model "
              f"means], from its summary CSVs. **{SAD}** (bold) is the paper's largest context effect.", ""]
    sources = (("warm_ft", "paper warm fine-tunes"), ("warm_sysprompt", "paper warm system prompt"),
               ("cold_ft", "paper cold fine-tunes"))
    rows = []
    for c in data["contexts"]:
        name = f"**{c['condition']}**" if c["sad"] else c["condition"]
        cells = [_cell(c["ours"].get(t)) for t in targets]
        if c["sad"]:
            cells = [f"**{x}**" for x in cells]
        rows.append([name, str(c["n"]), *(_paper_context(paper, s, c["condition"]) for s, _ in sources), *cells])
    lines += _table(["context", "n", *(n for _, n in sources), *(f"ours: {t}" for t in targets)], rows)
    return lines


KNOWN_ITEMS_LEAD = "On known items (chosen by the baseline's answers, so leaning positive)"


def headline_sentences(data: dict[str, Any], known: dict[str, Any] | None) -> list[str]:
    """For each headline scope: the warm-side targets' effects and whether the paper's number lies inside our
    interval (and, where given, the same on the known items)."""
    out = []
    for h in data["headline"]:
        parts = []
        for t in data["warm_side"]:
            e = h["ours"].get(t)
            if not e or math.isnan(e["effect_pp"]):
                continue
            lo, hi = e["ci_low_pp"], e["ci_high_pp"]
            present = "an increase" if lo > 0 else "a decrease" if hi < 0 else "no detectable change"
            paper_in = "inside" if lo <= h["paper_pp"] <= hi else "outside"
            parts.append(f"{t} {_cell(e)} ({present}; the paper's value is {paper_in} the interval)")
        if not parts:
            continue
        known_part = ""
        if known:
            kh = next((k for k in known["headline"] if k["key"] == h["key"]), None)
            ks = [f"{t} {_cell(kh['ours'].get(t))}" for t in known["warm_side"]] if kh else []
            known_part = f" {KNOWN_ITEMS_LEAD}: {'; '.join(ks)}." if ks else ""
        out.append(f"{h['name'][0].upper()}{h['name'][1:]} (paper's warm fine-tunes {h['paper_pp']:+.2f} pp; "
                   f"{h['n']} prompts here): {'; '.join(parts)}.{known_part}")
    return out
