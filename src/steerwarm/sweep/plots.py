"""Plots of a sweep against the dial: error rates, belief effects, the context heatmap and the meter.

Invariant: plots draw only what the report's data holds (matplotlib Agg, files only), with the same 95% intervals.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass
from steerwarm.sweep.effects import ALL, BELIEF_LEVELS

BELIEF_COLORS = {"none": "tab:blue", "stated": "tab:orange"}
REF_MARKERS = {"finetune=warm": "*", "finetune=cold": "v"}


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
