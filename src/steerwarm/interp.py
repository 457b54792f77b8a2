"""Inspection of a steering vector: per-layer norms and cosines, probe accuracy, a logit lens, projections.

`inspect_vector` writes `report.md` and PNG plots (matplotlib, Agg backend) into one folder.

Invariants:
- Every section says what data it rests on; a section without data says so and draws no plot.
- Cosines compare unit directions at the same layer; layers present in only one vector are named, not compared.
- Probe accuracy: a logistic regression on standardised activations separating the tuned model's residuals from the
  base model's on the same tokens (from `extract sft` shards), cross-validated with folds grouped by item (tokens
  of one item never sit on both sides of a split), on a seeded subsample of items.
- Logit lens: the direction scaled to the layer's typical norm, passed through the model's final norm and its
  unembedding; promoted tokens have the largest logits, suppressed ones the smallest, each reported relative to the
  mean logit over the vocabulary.
- Projections are onto the unit direction, in units of the layer's typical norm, one value per response: the mean
  over its response tokens.
- `transformer_lens_residuals` reads `blocks.L.hook_resid_post` through TransformerLens's TransformerBridge, the
  same point as `steering.record_residuals` (the output of decoder layer L); a test holds the two equal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from steerwarm.extract import TextItem, response_activations
from steerwarm.models import LoadedModel
from steerwarm.plots import pyplot, save_figure
from steerwarm.shards import open_shards, read_layer, read_lengths
from steerwarm.vectors import SteeringVector


# -- measures ---------------------------------------------------------------------------------------------------------
def layer_cosines(a: SteeringVector, b: SteeringVector) -> dict[int, float]:
    """Cosine between the two vectors' unit directions at every layer both have."""
    return {layer: float(a.directions[layer] @ b.directions[layer]) for layer in sorted(a.directions)
            if layer in b.directions}


def probe_accuracy(base_acts: torch.Tensor, tuned_acts: torch.Tensor, lengths: torch.Tensor, *, folds: int = 5,
                   max_items: int = 64, seed: int = 0) -> float:
    """Cross-validated accuracy of a logistic probe telling tuned from base activations (folds grouped by item)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_items = int(lengths.numel())
    if n_items < 2:
        raise ValueError("a cross-validated probe needs at least two items")
    groups_all = np.repeat(np.arange(n_items), lengths.numpy())
    keep_items = np.random.default_rng(seed).permutation(n_items)[:max_items]
    mask = np.isin(groups_all, keep_items)
    x_b, x_t = base_acts.double().numpy()[mask], tuned_acts.double().numpy()[mask]
    x = np.concatenate([x_b, x_t])
    y = np.array([0] * len(x_b) + [1] * len(x_t))
    groups = np.concatenate([groups_all[mask], groups_all[mask]])
    k = min(folds, len(keep_items))
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    return float(np.mean(cross_val_score(clf, x, y, groups=groups, cv=GroupKFold(n_splits=k))))


@dataclass(frozen=True)
class Lens:
    layer: int
    promoted: list[tuple[str, float]]
    suppressed: list[tuple[str, float]]


def logit_lens(loaded: LoadedModel, vector: SteeringVector, layer: int, k: int = 15) -> Lens:
    """Tokens the direction at `layer` most promotes and suppresses through the final norm and unembedding."""
    from steerwarm.steering import backbone

    vector.check_model(loaded.fingerprint)
    model = loaded.model
    norm = getattr(backbone(model), "norm", None)
    if norm is None:
        norm = getattr(backbone(model), "ln_f", None)
    head = model.get_output_embeddings()  # type: ignore[no-untyped-call]
    if norm is None or head is None:
        raise TypeError(f"cannot find the final norm and unembedding of {type(model).__name__}")
    param = next(model.parameters())
    d = (vector.directions[layer] * vector.norms[layer]).to(param.dtype)[None, None, :]
    with torch.inference_mode():
        logits = head(norm(d))[0, 0].float()
    logits = logits - logits.mean()
    order = torch.argsort(logits, descending=True)

    def tokens(ids: torch.Tensor) -> list[tuple[str, float]]:
        return [(str(loaded.tokenizer.decode([int(i)])), float(logits[i])) for i in ids]

    return Lens(layer, tokens(order[:k]), tokens(order.flip(0)[:k]))


def item_projections(acts: torch.Tensor, lengths: torch.Tensor, vector: SteeringVector, layer: int) -> list[float]:
    """Per item: mean over its tokens of the projection onto the unit direction, in units of the typical norm."""
    proj = (acts.float() @ vector.directions[layer]) / vector.norms[layer]
    return [float(chunk.mean()) for chunk in torch.split(proj, [int(n) for n in lengths.tolist()])]


def text_projections(loaded: LoadedModel, items: Sequence[TextItem], vector: SteeringVector, layer: int,
                     batch_size: int = 8) -> list[float]:
    """Projections (as `item_projections`) of texts read by `loaded` (prompt templated, response tokens only)."""
    out = []
    for acts in response_activations(loaded, items, [layer], batch_size=batch_size, desc="projections"):
        out.append(float(((acts[layer] @ vector.directions[layer]) / vector.norms[layer]).mean()))
    return out


def transformer_lens_residuals(model_dir: Path, input_ids: torch.Tensor, layers: Sequence[int]) -> dict[int, Any]:
    """{layer: [batch, pos, hidden]} residuals after each decoder layer, through TransformerLens's TransformerBridge
    (needs the `interp` extra: pip install -e '.[interp]')."""
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(str(model_dir), device="cpu", dtype=torch.float32)
    wanted = {name for layer in layers for name in (f"blocks.{layer}.hook_out", f"blocks.{layer}.hook_resid_post")}
    with torch.inference_mode():
        _, cache = bridge.run_with_cache(input_ids, names_filter=lambda name: name in wanted)
    return {layer: cache[f"blocks.{layer}.hook_resid_post"].detach().float() for layer in layers}


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


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v).replace("|", "\\|").replace("\n", "\\n")

    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]]


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


def _series_table(series: Mapping[str, Mapping[int, float]]) -> list[str]:
    layers = sorted({x for v in series.values() for x in v})
    return _md_table(["layer", *series], [(x, *[series[k].get(x, float("nan")) for k in series]) for x in layers])


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
    return md + _md_table(["layer", "typical norm", "raw diff norm", "ratio"],
                          [(x, vec.norms[x], raw.get(x, float("nan")), raw.get(x, float("nan")) / vec.norms[x])
                           for x in layers])


def _cosines_section(vec: SteeringVector, against: Mapping[str, SteeringVector], out: Path) -> list[str]:
    md = ["## Cosines with other directions", ""]
    if not against:
        return [*md, "No other vectors given (--against): no cosines."]
    cos = {label: layer_cosines(vec, other) for label, other in against.items()}
    plot = _line_plot(cos, out, "cosines.png", ylabel="cosine", title=f"cosine with {vec.name}", ylim=(-1.05, 1.05),
                      hline=0.0)
    md += [f"![cosines]({plot})", "", *_series_table(cos)]
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
        return [*md, "No activation caches given (--cache, from `steerwarm extract sft`): probe accuracy not computed."]
    acc: dict[str, dict[int, float]] = {}
    for cache in caches:
        bdir, tdir = cache / "acts" / "base", cache / "acts" / "tuned"
        bspec, tspec = open_shards(bdir), open_shards(tdir)
        lengths = read_lengths(bdir, bspec)
        acc[f"{tspec.model_name} ({cache.name})"] = {
            x: probe_accuracy(read_layer(bdir, bspec, x), read_layer(tdir, tspec, x), lengths) for x in bspec.layers}
    plot = _line_plot(acc, out, "probe.png", ylabel="accuracy", title="probe: tuned vs base", ylim=(0.4, 1.02),
                      hline=0.5)
    return [*md, "Cross-validated logistic probe, tuned versus base residuals on the same tokens (chance = 0.5).", "",
            f"![probe]({plot})", "", *_series_table(acc)]


def _lens_section(inputs: InspectInputs, layer: int) -> list[str]:
    md = [f"## Logit lens at layer {layer}", ""]
    if inputs.model is None:
        return [*md, f"No model loaded: logit lens not computed. {inputs.model_error}".strip()]
    lens = logit_lens(inputs.model, inputs.vector, layer)
    return [*md, "The direction (x typical norm) through the final norm and unembedding; logit minus vocabulary mean.",
            "", *_md_table(["promoted", "logit", "suppressed", "logit"],
                           [(repr(p[0]), p[1], repr(s[0]), s[1])
                            for p, s in zip(lens.promoted, lens.suppressed, strict=True)])]


def _projections_section(inputs: InspectInputs, layer: int, out: Path) -> list[str]:
    vec = inputs.vector
    md = [f"## Projections of responses onto the direction at layer {layer}", ""]
    groups: dict[str, list[float]] = {}
    for cache in inputs.caches:
        bdir, tdir = cache / "acts" / "base", cache / "acts" / "tuned"
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
            *_md_table(["group", "n", "mean", "sd"],
                       [(label, len(v), float(np.mean(v)), float(np.std(v))) for label, v in groups.items()])]


def inspect_vector(inputs: InspectInputs, out: Path) -> Path:
    """Write `report.md` and PNG plots for the vector into `out`; returns the report path."""
    out.mkdir(parents=True, exist_ok=True)
    vec = inputs.vector
    layers = sorted(vec.directions)
    layer = inputs.layer if inputs.layer is not None else vec.layers[0]
    if layer not in vec.directions:
        raise ValueError(f"layer {layer} has no direction in {vec.name!r} (layers {layers})")
    md = [*_header(vec, "Steering vector"), f"- the layer inspected below: {layer}", ""]
    for section in (_norms_section(vec, out), _cosines_section(vec, inputs.against, out),
                    _probe_section(inputs.caches, out), _lens_section(inputs, layer),
                    _projections_section(inputs, layer, out), _extra_sections(vec)):
        md += [*section, ""]
    path = out / "report.md"
    path.write_text("\n".join(md) + "\n", encoding="utf-8")
    return path


def _header(vec: SteeringVector, title: str) -> list[str]:
    layers = sorted(vec.directions)
    return [f"# {title} `{vec.name}`", "",
            f"- model: {vec.model_name} (`{vec.model_fingerprint}`)",
            f"- method: {vec.provenance.method}, data hash `{vec.provenance.data_hash}`, made {vec.provenance.created}"
            f" by steerwarm {vec.provenance.steerwarm_version}",
            f"- provenance params: `{json.dumps(vec.provenance.params, sort_keys=True)}`",
            f"- layers: {layers[0]}-{layers[-1]} ({len(layers)}); default steering layers {vec.layers}"]


def vector_card(vec: SteeringVector, against: Mapping[str, SteeringVector], *, made_by: str = "") -> str:
    """The card shipped next to a vector: how it was made (provenance, data hash, the commands), the layer table,
    the calibration curve and the cosines to other sources at every layer (no plots, no model needed)."""
    md = [*_header(vec, "Vector card:")]
    if made_by:
        md.append(f"- made with: {made_by}")
    if vec.calibration is not None:
        ref = vec.extra.get("calibration_reference", {})
        nan = float("nan")
        md.append(f"- dial: warmth w steers layers {vec.layers} with raw coefficient coef(w) x typical norm "
                  f"(table below); 1 = the reference `{ref.get('label', '?')}` (p_warm {ref.get('p_warm', nan):.4f}"
                  f" ± {ref.get('p_warm_se', nan):.4f}, n {ref.get('n', '?')})")
    md += ["", "## Cosines with the other sources", ""]
    if against:
        cos = {label: layer_cosines(vec, other) for label, other in against.items()}
        md += _series_table(cos)
    else:
        md.append("No other sources compared.")
    md += ["", *_extra_sections(vec)]
    return "\n".join(md) + "\n"


def _extra_sections(vec: SteeringVector) -> list[str]:
    md = ["## Layer choice", ""]
    table: Mapping[str, Any] | None = vec.extra.get("layer_table")
    if table:
        md.append(f"Chosen layer {table['chosen']} (NLL increase cap {table['nll_cap']}); base p_warm "
                  f"{table['base']['p_warm']:.4f}, base NLL {table['base']['nll']:.4f}.")
        md.append("")
        md += _md_table(["layer", "coef", "p_warm", "se", "gain", "NLL", "NLL increase"],
                        [(r["layer"], r["coef"], r["p_warm"], r["p_warm_se"], r["gain"], r["nll"], r["nll_increase"])
                         for r in table["rows"]])
    else:
        md.append("No layer table stored (see `steerwarm choose-layer`).")
    md += ["", "## Calibration", ""]
    cal = vec.calibration
    if cal is not None:
        md += [cal.note, ""]
        md += _md_table(["dial", "coef"], list(zip(cal.dial, cal.coef, strict=True)))
        if cal.curve:
            md += ["", "Measured curve:", ""]
            keys = [k for k in ("coef", "dial_raw", "dial", "p_warm", "p_warm_se", "nll", "nll_se", "n")
                    if k in cal.curve[0]]
            md += _md_table(keys, [[r.get(k, "") for k in keys] for r in cal.curve])
    else:
        md.append("Not calibrated (see `steerwarm calibrate`).")
    md.append("")
    return md
