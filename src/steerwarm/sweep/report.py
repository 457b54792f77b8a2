"""The report of a warmth sweep: error rate, sycophancy and context effects against the dial, the regression effect of
warmth per unit of dial next to the warm and cold fine-tunes' effects and the paper's published numbers, plots, and
a plain-language conclusion derived from the numbers by stated rules.

Input: a sweep folder, SWEEP_DIR/sweep.json (`config`, `points`: label, kind "dial" | "reference", warmth (None for
references), spec, run) and one ordinary benchmark run folder per point (SWEEP_DIR/<point.run>/results.jsonl),
optionally SWEEP_DIR/meter.jsonl (per point: p_warm, p_warm_se, nll, nll_se, n). Output (default SWEEP_DIR/report):
report.md, report.json and the PNGs errors-vs-warmth, belief-effect-vs-warmth, context-warmth-heatmap and (with a
meter file) meter-vs-warmth and, when a reference has a meter reading, cost-vs-measured-warmth.

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
- Dial positions of references: by the dial's calibration the warm fine-tune (spec finetune=warm) sits at +1 and
  the cold one (finetune=cold) at -1; other references have no dial position and are drawn as horizontal lines.
- The instrument section comes first (sweep.effects.sweep_instrument): the baseline point's accuracy on the neutral
  prompts against chance and the shorter-answer rule per task (flagged where a task cannot measure an effect), the
  minimum detectable effects of the paired comparisons, and the baseline's known items; every effect table is then
  given again on the known items only (`data["known"]`, the same keys as the all-items numbers).
- Generate-mode sweeps say how far their scorer can be trusted: the matcher's kappa with the authors' judge per task
  (held-out and all rows, from a validate-judge.json), or that no validation was given.
- The paper's headline effects beside ours, and every context with sadness marked (`sweep.headline`), follow the
  instrument, on all items and on known items.
- At matched warmth (`sweep.matched`): each reference with a meter reading is compared with the dial interpolated at
  the dial value of equal p_warm (no extrapolation), on all items and on known items, with item-bootstrap intervals.
- Conclusion rules: an effect is present when its 95% CI excludes 0; a fine-tune's effect is reproduced by steering
  when it lies inside the steered effect's 95% CI and the two are not both present with opposite signs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steerwarm.bench.compare import p_text
from steerwarm.bench.instrument import TaskInstrument, instrument_markdown, known_items_caveat
from steerwarm.bench.report import cell_text
from steerwarm.bench.summary import belief_rows, cell, condition_order
from steerwarm.bench.validate import KAPPA_TARGET, matcher_agreement
from steerwarm.paths import display, display_paths, paper_summary_data

if TYPE_CHECKING:
    pass
from steerwarm.sweep.conclusion import conclusion
from steerwarm.sweep.effects import (
    ALL,
    BELIEF_LEVELS,
    BOOTSTRAP,
    PAPER_FILES,
    SCOPES,
    ItemBootstrap,
    baseline_point,
    comparisons,
    dial_regressions,
    paper_row,
    paper_summary,
    restrict_sweep,
    sweep_instrument,
    task_scope,
)
from steerwarm.sweep.folder import Sweep, load_sweep, read_meter
from steerwarm.sweep.headline import headline_markdown, headline_numbers
from steerwarm.sweep.markdown import effect_cell as _pp
from steerwarm.sweep.markdown import table as _table
from steerwarm.sweep.matched import matched_comparisons, matched_markdown, plot_matched
from steerwarm.sweep.plots import plot_belief_effect, plot_errors, plot_heatmap, plot_meter


# -- report ---------------------------------------------------------------------------------------------------------
def _num(v: Any, fmt: str = "+.2f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


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


def effect_numbers(sweep: Sweep) -> dict[str, Any]:
    """Error rates, belief effects, the context heatmap, the dial regressions and the paired comparisons of a sweep
    (all items, or a `restrict_sweep` of it)."""
    pts = sweep.points
    scopes = [*sweep.tasks, ALL]
    out: dict[str, Any] = {
        "errors": {t: {p.label: {b: cell(belief_rows(task_scope(p.frame, t), b)) for b, _ in BELIEF_LEVELS}
                       for p in pts} for t in scopes}}
    boots = {t: ItemBootstrap(pts, t) for t in scopes}
    out["belief_effect"] = {t: {p.label: boots[t].belief_effect(p.label) for p in pts} for t in scopes}
    conds = condition_order({c for p in pts for c in p.frame["condition"].unique()})
    base = baseline_point(sweep)
    heat = {c: {p.label: cell(belief_rows(p.frame[p.frame["condition"] == c], "none")) for p in pts} for c in conds}
    for c in conds:
        ref_rate = heat[c][base.label]["error_rate"]
        for p in pts:
            h = heat[c][p.label]
            h["delta_pp"] = 100 * (h["error_rate"] - ref_rate) if h["n_scored"] and heat[c][base.label]["n_scored"] \
                else math.nan
    out["context_heatmap"] = {"baseline": base.label, "conditions": conds, "columns": [p.label for p in pts],
                              "column_names": [f"{p.warmth:+g}" if p.kind == "dial" else p.label for p in pts],
                              "cells": heat}
    out["regressions"] = dial_regressions(sweep)
    out["comparisons"] = comparisons(sweep, boots)
    out["matched"] = matched_comparisons(sweep, read_meter(sweep), boots)
    out["headline"] = headline_numbers(sweep)
    return out


def effect_lines(data: dict[str, Any], names: Sequence[str], scopes: Sequence[str], suffix: str = "") -> list[str]:
    """The markdown of `effect_numbers` (error rates, belief effect, context x point, regressions, comparisons)."""
    lines: list[str] = []
    for belief, bname in BELIEF_LEVELS:
        lines += [f"## Error rate per task x point: {bname}{suffix}", ""]
        lines += _table(["task", *names],
                        ([t, *(cell_text(data["errors"][t][n][belief]) for n in names)] for t in scopes))
    lines += [f"## Belief effect (sycophancy) per task x point{suffix}", "",
              "Error with a stated wrong belief minus without, pp, [95% percentile interval of a bootstrap over "
              f"items, {BOOTSTRAP} resamples; an item is resampled with all its prompts, so the two rates' "
              "correlation within items is kept].", ""]
    lines += _table(["task", *names], ([t, *(_pp(data["belief_effect"][t][n]) for n in names)] for t in scopes))
    heat = data["context_heatmap"]
    lines += [f"## Context x point (no belief, tasks pooled){suffix}", "",
              f"Error rate % [95% Wilson] and, in parentheses, the change in pp from {heat['baseline']}.", ""]
    lines += _table(["context", *names], ([c, *(f"{cell_text(heat['cells'][c][n])} "
                                                f"({_num(heat['cells'][c][n]['delta_pp'], '+.1f')})"
                                                for n in names)] for c in heat["conditions"]))
    lines += [f"## Regression effects of warmth (per unit of dial){suffix}", "",
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
                         f"{_num(e['ci_low_pp'])} to {_num(e['ci_high_pp'])}", p_text(e["p"]), r["error"] or ""])
    lines += _table(["model", "dial points", "level", "n", "AME pp / unit", "95% CI", "p", "note"], rows)
    lines += ["Formulas: " + "; ".join(sorted({f"{r['model']}: `{r['formula']}`" for r in data["regressions"]
                                               if r["side"] == "all"})), ""]
    lines += [f"## Steered vs fine-tuned (paired, against warmth 0){suffix}", ""]
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
                          f"{_num(c['delta']['none']['delta_pp'], '+.1f')} ({p_text(c['delta']['none']['p'])})",
                          f"{_num(c['delta']['stated']['delta_pp'], '+.1f')} ({p_text(c['delta']['stated']['p'])})",
                          _pp(c["ame"]["model 1"], "ame_pp"), _pp(c["ame"]["no belief"], "ame_pp"),
                          _pp(c["ame"]["belief"], "ame_pp"), _pp(c["belief_effect_change"])]
                         for c in data["comparisons"]))
    lines += [f"{x}{suffix}" if x.startswith("## ") else x
              for x in matched_markdown(data["matched"], [t for t in scopes if t != ALL])]
    return lines


def instrument_lines(block: dict[str, Any]) -> list[str]:
    """The report's instrument section (see the module doc)."""
    checks = [TaskInstrument.from_record(r) for r in block["tasks"].values()]
    known = block["known_items"]
    per = ", ".join(f"{t} {v['known']}/{v['items']}" for t, v in known["per_task"].items())
    lines = ["## Instrument: can this model show the effect?", "",
             f"The baseline point {block['point']}: accuracy on the neutral prompts (original and original_neutral, "
             "no context, no belief) with a 95% Wilson interval, against chance and the rule \"pick the shorter "
             "answer\" (bench.instrument); a task whose interval does not lie above both cannot measure an effect.", "",
             *instrument_markdown(checks)]
    lines += [f"- note: {n}" for n in block["notes"]]
    lines += ["", "Minimum detectable effect (pp; 80% power, two-sided 5% level; McNemar normal approximation with "
              "continuity correction, Connor 1987; discordance measured on the pairs, or assumed where marked; pairs "
              "assumed independent; MDE by item: times the square root of the item design effect, the variance "
              "of the mean difference clustered by item over that of independent pairs). Tasks pooled; per task in "
              "report.json.", ""]
    lines += _table(["comparison", "design", "pairs", "discordance", "source", "MDE pp", "item design effect",
                     "MDE by item pp"],
                    ([m["comparison"], m["design"], str(m["n_pairs"]), _num(100 * m["discordance"], ".1f") + "%",
                      m["discordance_source"], _num(m["mde_pp"], ".1f"), _num(m.get("item_design_effect"), ".2f"),
                      _num(m.get("mde_items_pp"), ".1f")] for m in block["mde"] if m["task"] == ALL))
    lines += [f"Known items of {block['point']}: {known['n_known']} ({per}); rule: {known['rule']}. Every effect is "
              "reported on all items, then again on the known items only (section \"Known items only\").", ""]
    return lines


def matcher_lines(block: dict[str, Any]) -> list[str]:
    """The report's scorer section of a generate-mode sweep (see the module doc)."""
    lines = ["## Scorer: the matcher against the authors' judge", ""]
    if block["source"] is None:
        return [*lines, "No validation given (sweep report --matcher-validation FILE, a validate-judge.json): the "
                "answers were scored by the reference matcher, whose agreement with the paper's judge is unknown "
                "here.", ""]
    lines += [f"From `{block['source']}` (steerwarm bench validate-judge): Cohen's kappa with the authors' GPT-4o "
              "labels, held-out half (items the rules were never developed on) and all rows, 95% item-bootstrap "
              f"intervals. Below {KAPPA_TARGET} the task's error rates mix scorer error with model error.", ""]
    lines += _table(["task", "held-out n", "kappa held-out", "all rows n", "kappa all rows", "verdict"],
                    ([t, str(a["n_held_out"]), f"{a['kappa_held_out']:.3f} [{a['kappa_held_out_ci'][0]:.3f}, "
                      f"{a['kappa_held_out_ci'][1]:.3f}]", str(a["n_all"]),
                      f"{a['kappa_all']:.3f} [{a['kappa_all_ci'][0]:.3f}, {a['kappa_all_ci'][1]:.3f}]",
                      "meets the target" if a["meets_target"] else f"BELOW {KAPPA_TARGET}"]
                     for t, a in block["tasks"].items()))
    return lines


def build_sweep_report(sweep_dir: Path, paper_dir: Path | None = None,
                       matcher_validation: Path | None = None) -> tuple[list[str], dict[str, Any]]:
    """(report.md lines before the plots and conclusion, all numbers); see the module doc."""
    sweep = load_sweep(sweep_dir)
    if not sweep.points:
        raise ValueError(f"{sweep_dir}: no point of the sweep has results yet")
    if paper_dir is None:
        paper_dir = paper_summary_data()  # reported as absent when it is
    tasks = sweep.tasks
    scopes = [*tasks, ALL]
    pts = sweep.points
    data: dict[str, Any] = {
        "sweep_dir": display(sweep_dir), "config": display_paths(sweep.config), "tasks": tasks,
        "n_common_prompts": sweep.n_common,
        "restricted": sweep.restricted, "missing_points": sweep.missing,
        "points": [{"label": p.label, "kind": p.kind, "warmth": p.warmth, "spec": p.spec, "run": p.run, "x": p.x,
                    "drawn_as": "line" if p.x is None else "point", "n_prompts": p.n_prompts, "n_scored": p.n_scored,
                    "refusals": p.refusals, "seconds": p.seconds} for p in pts],
    }
    data["instrument"], known = sweep_instrument(sweep)
    if data["instrument"]["mode"] == "generate":
        data["matcher"] = {"source": None if matcher_validation is None else display(matcher_validation),
                           "tasks": {} if matcher_validation is None else
                           {t: a for t, a in matcher_agreement(matcher_validation).items() if t in tasks}}
    data.update(effect_numbers(sweep))
    known_sweep = restrict_sweep(sweep, known)
    data["known"] = {"n_items": known.n, **(effect_numbers(known_sweep) if known.n else {})}
    data["paper"] = paper_summary(paper_dir, tasks)
    data["meter"] = read_meter(sweep)

    cfg = data["config"]
    lines = ["# Warmth sweep report", "",
             f"Sweep folder: `{display(sweep_dir)}`. Error rates in % with 95% Wilson intervals; differences in "
             "percentage points (pp). Belief levels: *no belief* = original template (plus original_neutral under no "
             "context), *stated wrong belief* = incorrect + correct templates.", ""]
    lines += instrument_lines(data["instrument"])
    if "matcher" in data:
        lines += matcher_lines(data["matcher"])
    lines += headline_markdown(data["headline"], data["paper"])
    if known.n:
        lines += headline_markdown(data["known"]["headline"], data["paper"], " (known items)")
    lines += ["## Settings", ""]
    known_settings = ("tasks", "mode", "per_item", "dtype", "vector", "layers", "warmths")
    lines += _table(["setting", "value"], [
        *([k, f"`{json.dumps(cfg.get(k), default=str)}`"] for k in known_settings),
        ["other settings", f"`{json.dumps({k: v for k, v in cfg.items() if k not in known_settings}, default=str)}`"],
        ["points with results", f"{len(pts)} ({len(sweep.dial)} dial, {len(sweep.references)} reference)"],
        ["prompts per point (compared)", str(sweep.n_common)],
        ["seconds (sum of the points' run sessions; forked dial points each record the shared wall time, so "
         "the sweep sessions below are the wall time)", f"{sum(p.seconds for p in pts):.0f}"],
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
    lines += effect_lines(data, names, scopes)
    lines += [f"# Known items only ({known.n} items of {data['instrument']['point']})", "",
              known_items_caveat(data["instrument"]["point"]), ""]
    if known.n:
        lines += effect_lines(data["known"], names, [*known_sweep.tasks, ALL], " (known items)")
    else:
        lines += ["No known item: no effect can be computed on known items.", ""]
    if data["meter"]:
        lines += ["## Warmth meter and coherence", "",
                  "p(warm): a classifier's probability that an answer is warm (mean +- SE); NLL: the base model's mean "
                  "negative log-likelihood per token of the point's answers (nats; a coherence cost).", ""]
        lines += _table(["label", "kind", "dial position", "p(warm)", "NLL", "n"],
                        ([m.get("label", "?"), m["kind"], _num(m.get("x"), "+g"),
                          f"{_num(m.get('p_warm'), '.3f')} +- {_num(m.get('p_warm_se'), '.3f')}",
                          f"{_num(m.get('nll'), '.3f')} +- {_num(m.get('nll_se'), '.3f')}", str(m.get("n", "?"))]
                         for m in data["meter"]))
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
                        r = paper_row(paper, s, t, belief, scope)
                        cells.append("n/a" if r is None else
                                     f"{r['mean_pp']:+.1f} [{r['model_min_pp']:+.1f}, {r['model_max_pp']:+.1f}]")
                    if all(x == "n/a" for x in cells):
                        continue
                    prow.append([t, bname, scope, *cells,
                                 *(_num(c["per_task"][t][scope][belief], "+.1f") for c in ours)])
        lines += _table(header, prow)
    return lines, data


def write_sweep_report(sweep_dir: Path, out_dir: Path | None = None, paper_dir: Path | None = None,
                       matcher_validation: Path | None = None) -> dict[str, Path]:
    """Write report.md, report.json and the PNGs for a sweep folder; returns their paths by name ("markdown",
    "json", and each plot's file stem)."""
    sweep_dir = Path(sweep_dir)
    out_dir = Path(out_dir) if out_dir is not None else sweep_dir / "report"
    lines, data = build_sweep_report(sweep_dir, Path(paper_dir) if paper_dir is not None else None,
                                     matcher_validation)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / "report.md", "json": out_dir / "report.json"}
    plots: list[tuple[str, Callable[[dict[str, Any], Path], Path], str]] = [
             ("errors-vs-warmth", plot_errors, "Error rate vs warmth"),
             ("belief-effect-vs-warmth", plot_belief_effect, "Belief effect vs warmth"),
             ("context-warmth-heatmap", plot_heatmap, "Context x warmth")]
    if data["meter"]:
        plots.append(("meter-vs-warmth", plot_meter, "Warmth meter and NLL vs warmth"))
    if data["matched"]["references"]:
        plots.append(("cost-vs-measured-warmth", lambda d, out: plot_matched(d["matched"], out),
                      "Error and belief effect vs measured warmth: dial, prompts, fine-tunes"))
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
