"""Inspection of a steering vector: per-layer norms and cosines, probe accuracy, a logit lens, projections.

`inspect_vector` writes `report.md` and PNG plots (matplotlib, Agg backend) into one folder.

Invariants:
- Every section says what data it rests on; a section without data says so and draws no plot.
- The measures and their definitions are `inspect.measures`'; this module only lays them out with their plots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from steerwarm.directions.activations import TextItem
from steerwarm.directions.shards import open_shards, read_layer, read_lengths
from steerwarm.directions.sources import finetune_acts
from steerwarm.inspect.card import card_header, card_sections, md_table, series_table
from steerwarm.inspect.measures import item_projections, layer_cosines, logit_lens, probe_accuracy, text_projections
from steerwarm.model.load import LoadedModel
from steerwarm.plots import pyplot, save_figure
from steerwarm.steer.vector import SteeringVector


# -- report -----------------------------------------------------------------------------------------------------------
@dataclass
class InspectInputs:
    """What the report can draw on; everything but the vector is optional."""

    vector: SteeringVector
    against: dict[str, SteeringVector] = field(default_factory=dict)
    caches: list[Path] = field(default_factory=list)
    texts: dict[str, list[TextItem]] = field(default_factory=dict)
    model: LoadedModel | None = None
    model_error: str = ""
    layer: int | None = None


def _save(fig: Any, out: Path, name: str) -> str:
    save_figure(fig, out / name)
    return name




def _line_plot(series: Mapping[str, Mapping[int, float]], out: Path, name: str, *, ylabel: str, title: str,
               ylim: tuple[float, float], hline: float) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for label, values in series.items():
        ax.plot(list(values), list(values.values()), marker="o", label=label)
    ax.axhline(hline, color="grey", lw=0.5)
    ax.set(xlabel="layer", ylabel=ylabel, ylim=ylim, title=title)
    ax.legend(fontsize=7)
    return _save(fig, out, name)




def _norms_section(vec: SteeringVector, out: Path) -> list[str]:
    plt = pyplot()
    layers = sorted(vec.directions)
    md = ["## Per-layer norms", "",
          "Typical norm: median residual norm over response tokens (position 0 excluded). Raw difference norm: the "
          "length of the aggregated difference before normalisation (for a mean difference, the average shift).", ""]
    raw = {int(k): float(v) for k, v in vec.extra.get("raw_diff_norm", {}).items()}
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    ax[0].plot(layers, [vec.norms[x] for x in layers], marker="o")
    ax[0].set(title="typical residual norm", xlabel="layer")
    if raw:
        ax[1].plot(layers, [raw.get(x, np.nan) / vec.norms[x] for x in layers], marker="o")
        ax[1].set(title="raw difference norm / typical norm", xlabel="layer")
    md += [f"![norms]({_save(fig, out, 'norms.png')})", ""]
    return md + md_table(["layer", "typical norm", "raw diff norm", "ratio"],
                          [(x, vec.norms[x], raw.get(x, float("nan")), raw.get(x, float("nan")) / vec.norms[x])
                           for x in layers])


def _cosines_section(vec: SteeringVector, against: Mapping[str, SteeringVector], out: Path) -> list[str]:
    md = ["## Cosines with other directions", ""]
    if not against:
        return [*md, "No other vectors given (--against): no cosines."]
    cos = {label: layer_cosines(vec, other) for label, other in against.items()}
    plot = _line_plot(cos, out, "cosines.png", ylabel="cosine", title=f"cosine with {vec.name}", ylim=(-1.05, 1.05),
                      hline=0.0)
    md += [f"![cosines]({plot})", "", *series_table(cos)]
    for label, other in against.items():
        unshared = sorted(set(vec.directions) ^ set(other.directions))
        if unshared:
            md.append(f"\n`{label}` and `{vec.name}` do not share layers {unshared}.")
        if other.model_fingerprint != vec.model_fingerprint:
            md.append(f"\nNote: `{label}` was made for another model ({other.model_fingerprint}).")
    return md


def _probe_section(caches: Sequence[Path], out: Path) -> list[str]:
    md = ["## Probe accuracy per layer", ""]
    if not caches:
        return [*md, "No activation caches given (--cache, from `steerwarm vector extract finetune`): probe accuracy "
                     "not computed."]
    acc: dict[str, dict[int, float]] = {}
    for cache in caches:
        bdir, tdir = cache / "acts" / "base", finetune_acts(cache)
        bspec, tspec = open_shards(bdir), open_shards(tdir)
        lengths = read_lengths(bdir, bspec)
        acc[f"{tspec.model_name} ({cache.name})"] = {
            x: probe_accuracy(read_layer(bdir, bspec, x), read_layer(tdir, tspec, x), lengths) for x in bspec.layers}
    plot = _line_plot(acc, out, "probe.png", ylabel="accuracy", title="probe: fine-tune vs base", ylim=(0.4, 1.02),
                      hline=0.5)
    return [*md, "Cross-validated logistic probe, fine-tune versus base residuals on the same tokens "
                 "(chance = 0.5).", "",
            f"![probe]({plot})", "", *series_table(acc)]


def _lens_section(inputs: InspectInputs, layer: int) -> list[str]:
    md = [f"## Logit lens at layer {layer}", ""]
    if inputs.model is None:
        return [*md, f"No model loaded: logit lens not computed. {inputs.model_error}".strip()]
    lens = logit_lens(inputs.model, inputs.vector, layer)
    return [*md, "The direction (x typical norm) through the final norm and unembedding; logit minus vocabulary mean.",
            "", *md_table(["promoted", "logit", "suppressed", "logit"],
                           [(repr(p[0]), p[1], repr(s[0]), s[1])
                            for p, s in zip(lens.promoted, lens.suppressed, strict=True)])]


def _projections_section(inputs: InspectInputs, layer: int, out: Path) -> list[str]:
    vec = inputs.vector
    md = [f"## Projections of responses onto the direction at layer {layer}", ""]
    groups: dict[str, list[float]] = {}
    for cache in inputs.caches:
        bdir, tdir = cache / "acts" / "base", finetune_acts(cache)
        bspec, tspec = open_shards(bdir), open_shards(tdir)
        if layer in bspec.layers:
            lengths = read_lengths(bdir, bspec)
            groups[f"base model, {cache.name}"] = item_projections(read_layer(bdir, bspec, layer), lengths, vec, layer)
            groups[f"{tspec.model_name} model, {cache.name}"] = item_projections(read_layer(tdir, tspec, layer),
                                                                                lengths, vec, layer)
    if inputs.texts and inputs.model is None:
        md.append(f"Texts were given but no model is loaded, so they are not projected. {inputs.model_error}")
    elif inputs.model is not None:
        for label, items in inputs.texts.items():
            groups[f"{label} (read by the base model)"] = text_projections(inputs.model, items, vec, layer)
    if not groups:
        return [*md, "No activation caches (--cache) or texts (--texts) given: no projections."]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for label, proj in groups.items():
        ax.hist(proj, bins=20, alpha=0.5, label=label)
    ax.set(xlabel="projection / typical norm", ylabel="responses", title=f"projections at layer {layer}")
    ax.legend(fontsize=7)
    return [*md, "One value per response: mean projection of its response tokens onto the unit direction, in units "
            "of the typical norm. Cache groups: the same token sequences (both models' answers) through each model; "
            "text groups: the given answers read by the base model.", "",
            f"![projections]({_save(fig, out, 'projections.png')})", "",
            *md_table(["group", "n", "mean", "sd"],
                       [(label, len(v), float(np.mean(v)), float(np.std(v))) for label, v in groups.items()])]


def inspect_vector(inputs: InspectInputs, out: Path) -> Path:
    """Write `report.md` and PNG plots for the vector into `out`; returns the report path."""
    out.mkdir(parents=True, exist_ok=True)
    vec = inputs.vector
    layers = sorted(vec.directions)
    layer = inputs.layer if inputs.layer is not None else vec.layers[0]
    if layer not in vec.directions:
        raise ValueError(f"layer {layer} has no direction in {vec.name!r} (layers {layers})")
    md = [*card_header(vec, "Steering vector"), f"- the layer inspected below: {layer}", ""]
    for section in (_norms_section(vec, out), _cosines_section(vec, inputs.against, out),
                    _probe_section(inputs.caches, out), _lens_section(inputs, layer),
                    _projections_section(inputs, layer, out), card_sections(vec)):
        md += [*section, ""]
    path = out / "report.md"
    path.write_text("\n".join(md) + "\n", encoding="utf-8")
    return path
