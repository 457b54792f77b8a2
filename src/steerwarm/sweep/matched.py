"""Dial, prompt and fine-tune at matched warmth: which way of making the model warmer costs more accuracy?

Every point of a sweep with a meter reading has a measured warmth (p_warm of its greedy answers to the validation
prompts). A reference (a fine-tune, a warm or cold system prompt, an endpoint) is placed on the dial at the dial value
whose measured p_warm equals its own (`meter.placement`, interpolated on the dial points' meter curve; the sweep's
meter rows carry it as `matched_warmth`), and its
error rate and belief effect are compared with the dial's at that position.

Invariants:
- The dial's value at a matched position is the linear interpolation of its two bracketing measured dial points
  (weights 1 - t and t); an exact hit uses that point alone. A reference outside the measured p_warm range, or on a
  curve that gives no single position, has no matched position and no comparison (the reason is recorded), rather
  than an extrapolated one.
- Differences (reference minus interpolated dial) are linear combinations of error rates on the same prompts, so
  their 95% intervals come from the sweep report's item bootstrap (`effects.ItemBootstrap.combo`: an item is resampled
  with all its prompts in all points), which keeps the pairing of prompts across points.
- The position itself is treated as fixed (the meter's sampling error in p_warm is shown on the plot as horizontal
  error bars, not propagated into the difference's interval); the report says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from steerwarm.sweep.effects import ALL, ItemBootstrap
from steerwarm.sweep.folder import Sweep
from steerwarm.sweep.markdown import effect_cell as _cell
from steerwarm.sweep.markdown import table

LEVELS = (("error", "error rate, no belief (%)"), ("belief", "belief effect (pp)"))


def _weights(sweep: Sweep, position: float) -> dict[str, float] | None:
    """Interpolation weights of the dial points bracketing `position` (by label); None outside the dial."""
    dial = [p for p in sweep.dial if p.warmth is not None]
    exact = next((p for p in dial if abs(p.warmth - position) < 1e-9), None)  # type: ignore[operator]
    if exact is not None:
        return {exact.label: 1.0}
    below = [p for p in dial if p.warmth < position]  # type: ignore[operator]
    above = [p for p in dial if p.warmth > position]  # type: ignore[operator]
    if not below or not above:
        return None
    lo, hi = below[-1], above[0]
    t = (position - lo.warmth) / (hi.warmth - lo.warmth)  # type: ignore[operator]
    return {lo.label: 1.0 - t, hi.label: t}


def _coefs(weights: dict[str, float], level: str, sign: float) -> dict[tuple[str, str], float]:
    """Coefficients of a level (error: the no-belief rate; belief: stated minus none) of a weighted set of points."""
    out: dict[tuple[str, str], float] = {}
    for label, w in weights.items():
        if level == "error":
            out[(label, "none")] = out.get((label, "none"), 0.0) + sign * w
        else:
            out[(label, "stated")] = out.get((label, "stated"), 0.0) + sign * w
            out[(label, "none")] = out.get((label, "none"), 0.0) - sign * w
    return out


def _merge(a: dict[tuple[str, str], float], b: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0.0) + v
    return out


def _levels(b: ItemBootstrap, weights: dict[str, float], sign: float = 1.0) -> dict[str, dict[str, float]]:
    return {level: b.combo(_coefs(weights, level, sign)) for level, _ in LEVELS}


def matched_comparisons(sweep: Sweep, meter: Sequence[dict[str, Any]] | None,
                        boots: dict[str, ItemBootstrap]) -> dict[str, Any]:
    """`curve`: the dial points with a meter reading (label, warmth, p_warm, p_warm_se, and their pooled no-belief
    error rate and belief effect); `references`: one row per reference point with a meter reading: its p_warm, matched
    dial position, and per task scope (every task and ALL) its error rate and belief effect, the dial's at the
    matched position, and the difference (reference minus dial), all with 95% intervals. Empty lists without meter
    readings."""
    out: dict[str, Any] = {"curve": [], "references": []}
    if not meter:
        return out
    by_label = {r["label"]: r for r in meter if r.get("p_warm") is not None}
    for p in sweep.dial:
        row = by_label.get(p.label)
        if row is not None:
            out["curve"].append({"label": p.label, "warmth": p.warmth, "p_warm": float(row["p_warm"]),
                                 "p_warm_se": row.get("p_warm_se"), **_levels(boots[ALL], {p.label: 1.0})})
    for ref in sweep.references:
        row = by_label.get(ref.label)
        if row is None:
            continue
        p_warm = float(row["p_warm"])
        position = row.get("matched_warmth")  # sweep.folder.read_meter places references (meter.placement)
        weights = _weights(sweep, position) if position is not None else None
        item: dict[str, Any] = {"label": ref.label, "spec": ref.spec, "p_warm": p_warm,
                                "p_warm_se": row.get("p_warm_se"), "position": position, "scopes": {},
                                **_levels(boots[ALL], {ref.label: 1.0})}
        if weights is None:
            ps = [c["p_warm"] for c in out["curve"]]
            span = f"{min(ps):.3f}..{max(ps):.3f}" if ps else "none measured"
            item["reason"] = (f"p_warm {p_warm:.3f} has no matched dial position ({row.get('matched_status')}; "
                              f"the dial points read {span})")
            out["references"].append(item)
            continue
        item["dial_weights"] = weights
        for task in [*sweep.tasks, ALL]:
            b = boots[task]
            ref_c = {level: _coefs({ref.label: 1.0}, level, 1.0) for level, _ in LEVELS}
            item["scopes"][task] = {
                level: {"reference": b.combo(ref_c[level]), "dial": b.combo(_coefs(weights, level, 1.0)),
                        "difference": b.combo(_merge(ref_c[level], _coefs(weights, level, -1.0)))}
                for level, _ in LEVELS}
        out["references"].append(item)
    return out


def _level(e: dict[str, float]) -> str:
    return _cell(e, signed=False)


def matched_markdown(matched: dict[str, Any], tasks: Sequence[str]) -> list[str]:
    """The report section: per reference and level, its value, the dial's at the matched position, and the
    difference with its interval; tasks pooled, then per task for the difference."""
    rows = matched["references"]
    if not rows:
        return []
    lines = ["## Dial, prompt and fine-tune at matched warmth", "",
             "Each reference is placed at the dial value with the same meter p_warm (linear interpolation on the dial "
             "points' p_warm; no extrapolation) and compared with the dial there (its two bracketing points "
             "interpolated). Values in % / pp with 95% percentile intervals of the item bootstrap; a difference > 0 "
             "means the reference costs more than the dial at equal warmth. The matched position is taken as fixed "
             "(the meter's own error is the plot's horizontal bar).", ""]
    head = ["reference", "p_warm", "matched dial position"]
    for _, name in LEVELS:
        head += [f"{name}: reference", "dial at position", "difference"]
    body = []
    for r in rows:
        cells = [r["label"], f"{r['p_warm']:.3f}", "n/a" if r["position"] is None else f"{r['position']:+.2f}"]
        scope = r["scopes"].get(ALL)
        for level, _ in LEVELS:
            if scope is None:
                cells += ["n/a", "n/a", "n/a"]
            else:
                s = scope[level]
                cells += [_level(s["reference"]) if level == "error" else _cell(s["reference"]),
                          _level(s["dial"]) if level == "error" else _cell(s["dial"]), _cell(s["difference"])]
        body.append(cells)
    lines += table(head, body)
    for r in rows:
        if "reason" in r:
            lines.append(f"- {r['label']}: {r['reason']}.")
    per_task = [r for r in rows if r["scopes"]]
    if per_task and len(tasks) > 1:
        lines += ["", "Difference (reference minus dial at the matched position) per task, pp:", ""]
        head = ["reference"] + [f"{t}: {name.split(' (')[0]}" for t in tasks for _, name in LEVELS]
        lines += table(head, ([r["label"]] + [_cell(r["scopes"][t][lv]["difference"]) for t in tasks
                                              for lv, _ in LEVELS] for r in per_task))
    else:
        lines.append("")
    return lines


def plot_matched(matched: dict[str, Any], path: Path) -> Path:
    """Error rate (no belief) and belief effect against measured p_warm, tasks pooled: the dial as a line through its
    points, each reference as a labelled marker, all with their 95% intervals (p_warm: +-1.96 SE). The report draws
    it only when a reference has a meter reading."""
    from steerwarm.plots import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (level, name) in zip(axes, LEVELS, strict=True):
        series = [("warmth dial", "o-", "tab:blue", 4, sorted(matched["curve"], key=lambda c: c["p_warm"]))]
        for i, r in enumerate(matched["references"]):
            marker = "s" if r["spec"].startswith("prompt=") else "^" if r["spec"].startswith("finetune=") else "D"
            series.append((r["label"], marker, f"C{(i + 1) % 10}", 8, [r]))
        for label, fmt, color, ms, pts in series:
            pts = [p for p in pts if not math.isnan(p[level]["effect_pp"])]
            if not pts:
                continue
            ys = [p[level]["effect_pp"] for p in pts]
            ax.errorbar([p["p_warm"] for p in pts], ys, xerr=[1.96 * (p.get("p_warm_se") or 0.0) for p in pts],
                        yerr=[[y - p[level]["ci_low_pp"] for y, p in zip(ys, pts, strict=True)],
                              [p[level]["ci_high_pp"] - y for y, p in zip(ys, pts, strict=True)]],
                        fmt=fmt, color=color, ms=ms, capsize=2, lw=1.2, label=label)
        ax.set_xlabel("measured warmth (meter p_warm)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[1].axhline(0, color="grey", lw=0.8)
    axes[1].legend(fontsize=7, loc="best")
    fig.suptitle("What warmth costs, by how it is made (tasks pooled; 95% intervals)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
