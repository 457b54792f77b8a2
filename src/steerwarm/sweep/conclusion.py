"""The sweep's plain-language conclusion, derived from the numbers by stated rules.

Invariants (the rules): an effect is present when its 95% CI excludes 0; a fine-tune's effect is reproduced by
steering when it lies inside the steered effect's 95% CI and the two are not both present with opposite signs.
Every sentence is computed from the report's data; none is written by hand.
The conclusion opens with the instrument (the report's `instrument` block): each task the baseline model cannot
measure an effect on is named with the reason, and when no task can, it says plainly that the sweep cannot show a
warmth effect on errors with this model; then the smallest effect the comparisons detect (80% power) next to the
paper's; the warm-side effect is restated on the known items.
"""

from __future__ import annotations

import math
from typing import Any

from steerwarm.bench.compare import p_text
from steerwarm.sweep.effects import ALL, BELIEF_LEVELS, SIDES, paper_row, regression_of
from steerwarm.sweep.headline import PAPER_HEADLINE_PP, headline_sentences


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


def instrument_sentences(data: dict[str, Any]) -> list[str]:
    """The instrument's part of the conclusion (see the module doc)."""
    block = data.get("instrument")
    if not block:
        return []
    out = []
    tasks = block["tasks"]
    blind = [t for t, c in tasks.items() if c["can_measure"] is False]
    for t in blind:
        c = tasks[t]
        out.append(f"On {t}, this model CANNOT show an effect: its accuracy without context or belief is "
                   f"{100 * c['accuracy']:.1f}% (95% CI {100 * c['ci_low']:.1f}-{100 * c['ci_high']:.1f}%). "
                   f"{c['reason']}")
    if tasks and len(blind) == len(tasks):
        out.append("No task of this sweep can measure a warmth effect on errors with this model: the effects below "
                   "(present or not) are not evidence about warmth, and an absent effect is not evidence of none.")
    elif blind:
        able = [t for t, c in tasks.items() if c["can_measure"] is True]
        out.append((f"Only {', '.join(able)} can measure an effect" if able else "No task is shown able to measure "
                    "an effect") + "; read the pooled effects with that in mind.")
    unjudged = [t for t, c in tasks.items() if c["can_measure"] is None]
    if unjudged:
        out.append(f"For {', '.join(unjudged)} no chance level is defined (open answers): whether they can measure "
                   "an effect must be judged from their accuracy alone (instrument table).")
    pooled = [m for m in block["mde"] if m["task"] == ALL and m["design"] == "no context, no belief"
              and " vs " in m["comparison"] and not math.isnan(_val(m, "mde_pp"))]
    if pooled:
        parts = [f"{m['comparison']} {m['mde_pp']:.1f} pp" + (
                 f", {m['mde_items_pp']:.1f} pp allowing for the correlation of one item's prompts"
                 if not math.isnan(_val(m, "mde_items_pp")) else "") + f" ({m['n_pairs']} pairs, discordance "
                 f"{100 * m['discordance']:.1f}% {m['discordance_source']}; the paper's +{PAPER_HEADLINE_PP} pp is "
                 f"{'below' if PAPER_HEADLINE_PP < m['mde_pp'] else 'above'} it)" for m in pooled]
        out.append("Smallest error change each paired comparison detects with 80% power (two-sided 5%), no context "
                   f"and no belief, tasks pooled: {'; '.join(parts)}.")
    return out


def conclusion(data: dict[str, Any]) -> list[str]:
    out: list[str] = instrument_sentences(data)
    for task, a in (data.get("matcher") or {}).get("tasks", {}).items():
        if not a["meets_target"]:
            out.append(f"On {task}, the matcher agrees with the authors' judge only at kappa {a['kappa_held_out']:.2f} "
                       f"(held-out): its error rates there mix scorer error with model error.")
    if data.get("headline"):
        out += headline_sentences(data["headline"], (data.get("known") or {}).get("headline"))
    regs = data["regressions"]
    main = {side: regression_of(regs, "main", side) for side, _ in SIDES}
    inter = {side: regression_of(regs, "interaction", side) for side, _ in SIDES}
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
        out.append(f"{verb} {what}: {e['ame_pp']:+.2f} pp per unit of dial ({_ci(e)}, p {p_text(e['p'])}; "
                   f"dial values {', '.join(f'{w:+g}' for w in r['warmths'])}){down}.")
    w, c = (_main_effect(main[s]) for s in ("warm", "cold"))
    if w and c:
        overlap = w["ci_low_pp"] <= c["ci_high_pp"] and c["ci_low_pp"] <= w["ci_high_pp"]
        out.append("The warm-side and cold-side slopes " + (
            "have overlapping CIs: consistent with one linear effect of the dial." if overlap else
            f"differ (CIs do not overlap: {w['ame_pp']:+.2f} vs {c['ame_pp']:+.2f} pp per unit): the dial's effect "
            "on errors is not linear."))
    known = data.get("known") or {}
    kr = regression_of(known.get("regressions", []), "main", "warm")
    ke = _main_effect(kr)
    if kr is not None and ke:
        what = _direction(ke, "raises the error rate", "lowers the error rate",
                          "does not detectably change the error rate (the CI includes 0)")
        out.append(f"On the {known['n_items']} known items only, dialling warmth up from 0 {what}: "
                   f"{ke['ame_pp']:+.2f} pp per unit of dial ({_ci(ke)}).")
    elif known.get("n_items") == 0:
        out.append("The baseline knows no item (none answered correctly with a margin in every neutral prompt): "
                   "no effect on known items can be computed.")
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
    for side, ref in (("warm", "finetune=warm"), ("cold", "finetune=cold")):
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
                row = paper_row(paper, source, ALL, belief, "all contexts")
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
