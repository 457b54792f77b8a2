"""Markdown (+ PNG) report over one or more runs in the paper's layout: per task, per context, belief vs none, and
the delta of every run against a reference run (the first one unless told otherwise).

Invariants: the report is a pure function of the runs' results.jsonl and run.json (summaries are recomputed, not
read), error rates are in percent with 95% Wilson intervals, deltas in percentage points; runs that scored
different prompt sets are compared on the prompts they all scored (the Runs table still lists each run whole).
The instrument section (bench.instrument) follows the Runs table: each run's accuracy on the neutral prompts against
chance and the shorter-answer rule, with the flag where a task cannot measure an effect (each run whole), the
minimum detectable effects (each run against the reference, discordance measured; a single run: assumed, plus its
belief effect), and the known items of the reference; every table after it is given on all items, then again on the
known items only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from steerwarm.bench.compare import pair_frames, run_name
from steerwarm.bench.contexts import UNMODIFIED
from steerwarm.bench.instrument import (
    TaskInstrument,
    belief_effect_mde,
    comparison_mde,
    instrument_markdown,
    known_items,
    known_items_caveat,
    paired_mde,
    run_mode,
)
from steerwarm.bench.store import RunStore
from steerwarm.bench.summary import belief_rows, build_summary, cell, condition_order, records_frame


def cell_text(c: dict[str, Any]) -> str:
    if not c["n_scored"]:
        return "n/a"
    return f"{100 * c['error_rate']:.1f} [{100 * c['ci_low']:.1f}-{100 * c['ci_high']:.1f}]"


def _delta(c: dict[str, Any], ref: dict[str, Any]) -> str:
    if not c["n_scored"] or not ref["n_scored"]:
        return "n/a"
    return f"{100 * (c['error_rate'] - ref['error_rate']):+.1f}"


def build_report(run_dirs: Sequence[Path], reference: int = 0) -> tuple[str, dict[str, Any]]:
    stores = [RunStore(d) for d in run_dirs]
    names = [run_name(s) for s in stores]
    frames = [records_frame(s.load().values()) for s in stores]
    summaries = [build_summary(s) for s in stores]
    ref = reference
    scope = ""
    whole = frames
    if len(frames) > 1:
        common = set.intersection(*(set(f["prompt_id"]) for f in frames))
        if any(len(f) != len(common) for f in frames):
            frames = [f[f["prompt_id"].isin(common)] for f in frames]
            scope = (f" Runs scored different prompt sets; every table below is restricted to the {len(common)} "
                     "prompts all of them scored, so rates and deltas compare like with like.")
    modes = [run_mode(s, f) for s, f in zip(stores, whole, strict=True)]
    lines = ["# Conditioned error benchmark report", "",
             "Error rates in % with 95% Wilson intervals; delta = run - reference in percentage points. "
             f"Reference: {names[ref]}.{scope}", "", "## Runs", "",
             "| run | mode | scorer | prompts | scored | refusals | seconds | prompts/s |",
             "|---|---|---|---|---|---|---|---|"]
    for name, s in zip(names, summaries, strict=True):
        cfg, r = s["run"]["config"], s["run"]
        pps = r.get("prompts_per_s")
        lines.append(f"| {name} | {cfg.get('mode', '?')} | {cfg.get('scorer', '?')} | {r['n_prompts']} | "
                     f"{r.get('n_scored', 0)} | {r.get('refusals', 0)} | {r['seconds']:.0f} | "
                     f"{'n/a' if pps is None else f'{pps:.1f}'} |")
    data: dict[str, Any] = {"runs": names, "reference": names[ref], "tasks": {}, "instrument": {}}
    known = known_items(frames[ref], modes[ref])
    data["known_items"] = known.record()
    lines += ["", "## Instrument", "",
              "Can each run's target show an effect? Accuracy on the neutral prompts (original and original_neutral, "
              "no context, no belief; each run whole) with a 95% Wilson interval, against chance and the rule "
              "\"pick the shorter answer\" (bench.instrument).", ""]
    for i, (name, summary) in enumerate(zip(names, summaries, strict=True)):
        checks = [TaskInstrument.from_record(c) for c in summary.get("instrument", {}).get("tasks", {}).values()]
        if len(names) == 1:
            mde = [*comparison_mde(frames[i]), *belief_effect_mde(frames[i])]
        elif i == ref:
            mde = belief_effect_mde(frames[i])
        else:
            mde = paired_mde(pair_frames(frames[ref], frames[i]))
        data["instrument"][name] = {"tasks": [c.record() for c in checks], "mde": mde}
        lines += [f"### {name}", "", *instrument_markdown(checks, mde)]
    lines += [f"Known items (of the reference, {names[ref]}): {known.text()}. The tables below are given on all "
              "items, then on the known items only.", ""]
    lines += tables(names, frames, ref, data["tasks"], "")
    data["known"] = {"tasks": {}}
    lines += ["", f"# Known items only ({known.n} items)", "", known_items_caveat(names[ref]), ""]
    lines += tables(names, [known.restrict(f) for f in frames], ref, data["known"]["tasks"], " (known items)")
    return "\n".join(lines) + "\n", data


def tables(names: Sequence[str], frames: Sequence[Any], ref: int, out: dict[str, Any], suffix: str) -> list[str]:
    """The per-task and per-context tables of `frames` (one per run; `ref` the reference), their numbers added to
    `out` by task."""
    tasks = sorted({t for f in frames if not f.empty for t in f["task"].unique()})

    def cells_for(df: Any, task: str, cond: str | None, belief: str) -> dict[str, Any]:
        if df.empty:
            return cell(df)
        sub = df[df["task"] == task]
        if cond is not None:
            sub = sub[sub["condition"] == cond]
        return cell(belief_rows(sub, belief))

    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    others = [i for i in range(len(names)) if i != ref]
    header = ["task", *names, *(f"delta {names[i]}" for i in others)]
    lines = ["", f"## Per task: no context, no belief{suffix}", "", row(header), row(["---"] * len(header))]
    for task in tasks:
        cs = [cells_for(f, task, UNMODIFIED, "none") for f in frames]
        out[task] = {"no_context_no_belief": cs}
        lines.append(row([task, *(cell_text(c) for c in cs), *(_delta(cs[i], cs[ref]) for i in others)]))
    for task in tasks:
        conds = condition_order({c for f in frames if not f.empty for c in f[f["task"] == task]["condition"]})
        lines += ["", f"## {task}: per context{suffix}", "", "No belief (original template; under no context also "
                  "original_neutral), then a stated wrong belief (incorrect + correct), per run; belief effect = "
                  "belief - no belief.", ""]
        header = ["context", *(f"{n} {col}" for n in names for col in ("no belief", "belief", "belief effect")),
                  *(f"delta {names[i]} (no belief / belief)" for i in others)]
        lines += [row(header), row(["---"] * len(header))]
        rows = []
        for cond in conds:
            none = [cells_for(f, task, cond, "none") for f in frames]
            stated = [cells_for(f, task, cond, "stated") for f in frames]
            rows.append({"condition": cond, "none": none, "belief": stated})
            cols = [x for n, b in zip(none, stated, strict=True) for x in (cell_text(n), cell_text(b), _delta(b, n))]
            deltas = [f"{_delta(none[i], none[ref])} / {_delta(stated[i], stated[ref])}" for i in others]
            lines.append(row([cond, *cols, *deltas]))
        out.setdefault(task, {})["by_context"] = rows
    return lines


def plot_report(data: dict[str, Any], path: Path) -> Path | None:
    tasks = [t for t in data["tasks"] if data["tasks"][t].get("by_context")]
    if not tasks:
        return None
    from steerwarm.plots import pyplot, save_figure

    plt = pyplot()

    names = data["runs"]
    fig, axes = plt.subplots(2, len(tasks), figsize=(4.4 * len(tasks), 7.5), squeeze=False)
    width = 0.8 / len(names)
    for col, task in enumerate(tasks):
        rows = data["tasks"][task]["by_context"]
        for row, belief in enumerate(("none", "belief")):
            ax = axes[row][col]
            for k, name in enumerate(names):
                ys = [r[belief][k]["error_rate"] * 100 if r[belief][k]["n_scored"] else math.nan for r in rows]
                ax.bar([i + (k - (len(names) - 1) / 2) * width for i in range(len(rows))], ys, width=width,
                       label=name)
            ax.set_xticks(range(len(rows)), [r["condition"].split(":")[-1] for r in rows], rotation=60,
                          ha="right", fontsize=8)
            ax.set_title(f"{task}: {'no belief' if belief == 'none' else 'wrong belief stated'}", fontsize=10)
            ax.set_ylim(0, 100)
        axes[0][col].set_ylabel("error %")
    axes[0][0].legend(fontsize=7)
    return save_figure(fig, path)


def write_report(run_dirs: Sequence[Path], out_dir: Path, reference: int = 0) -> dict[str, Path]:
    import json

    if not run_dirs:
        raise ValueError("give at least one run folder")
    if not 0 <= reference < len(run_dirs):
        raise ValueError(f"reference index {reference} out of range for {len(run_dirs)} runs")
    text, data = build_report(run_dirs, reference)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / "report.md", "json": out_dir / "report.json"}
    png = plot_report(data, out_dir / "report-errors.png")
    if png is not None:
        text += f"\n![error rates by context]({png.name})\n"
        paths["plot"] = png
    paths["markdown"].write_text(text)
    paths["json"].write_text(json.dumps(data, indent=2, default=float) + "\n")
    return paths
