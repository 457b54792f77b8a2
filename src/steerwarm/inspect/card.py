"""A vector's card: provenance, cosines to other vectors, the layer table and the calibration curve, in Markdown; and
the Markdown tables the inspection report shares with it.

Invariant: a card is a pure function of the vector file (and the vectors it is compared with).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from steerwarm.inspect.measures import layer_cosines
from steerwarm.paths import display_paths
from steerwarm.steer.vector import SteeringVector


def card_header(vec: SteeringVector, title: str) -> list[str]:
    layers = sorted(vec.directions)
    return [f"# {title} `{vec.name}`", "",
            f"- model: {vec.model_name} (`{vec.model_fingerprint}`)",
            f"- method: {vec.provenance.method}, data hash `{vec.provenance.data_hash}`, made {vec.provenance.created}"
            f" by steerwarm {vec.provenance.steerwarm_version}",
            f"- provenance params: `{json.dumps(display_paths(vec.provenance.params), sort_keys=True)}`",
            f"- layers: {layers[0]}-{layers[-1]} ({len(layers)}); default steering layers {vec.layers}"]


def vector_card(vec: SteeringVector, against: Mapping[str, SteeringVector], *, made_by: str = "") -> str:
    """The card shipped next to a vector: how it was made (provenance, data hash, the commands), the layer table,
    the calibration curve and the cosines to other sources at every layer (no plots, no model needed)."""
    md = [*card_header(vec, "Vector card:")]
    if made_by:
        md.append(f"- made with: {made_by}")
    if vec.calibration is not None:
        ref = vec.extra.get("calibration_finetune", {})
        nan = float("nan")
        md.append(f"- dial: warmth w steers layers {vec.layers} with raw coefficient coef(w) x typical norm "
                  f"(table below); 1 = the fine-tune `{ref.get('label', '?')}` (p_warm {ref.get('p_warm', nan):.4f}"
                  f" ± {ref.get('p_warm_se', nan):.4f}, n {ref.get('n', '?')})")
    md += ["", "## Cosines with the other sources", ""]
    if against:
        cos = {label: layer_cosines(vec, other) for label, other in against.items()}
        md += series_table(cos)
    else:
        md.append("No other sources compared.")
    md += ["", *card_sections(vec)]
    return "\n".join(md) + "\n"


def card_sections(vec: SteeringVector) -> list[str]:
    md = ["## Layer choice", ""]
    table: Mapping[str, Any] | None = vec.extra.get("layer_table")
    if table:
        md.append(f"Chosen layer {table['chosen']} (NLL increase cap {table['nll_cap']}); base p_warm "
                  f"{table['base']['p_warm']:.4f}, base NLL {table['base']['nll']:.4f}.")
        md.append("")
        md += md_table(["layer", "coef", "p_warm", "se", "gain", "NLL", "NLL increase"],
                        [(r["layer"], r["coef"], r["p_warm"], r["p_warm_se"], r["gain"], r["nll"], r["nll_increase"])
                         for r in table["rows"]])
    else:
        md.append("No layer table stored (see `steerwarm vector choose-layer`).")
    md += ["", "## Calibration", ""]
    cal = vec.calibration
    if cal is not None:
        md += [cal.note, ""]
        md += md_table(["dial", "coef"], list(zip(cal.dial, cal.coef, strict=True)))
        if cal.curve:
            md += ["", "Measured curve:", ""]
            keys = [k for k in ("coef", "dial_raw", "dial", "p_warm", "p_warm_se", "nll", "nll_se", "n")
                    if k in cal.curve[0]]
            md += md_table(keys, [[r.get(k, "") for k in keys] for r in cal.curve])
    else:
        md.append("Not calibrated (see `steerwarm vector calibrate`).")
    md.append("")
    return md


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v).replace("|", "\\|").replace("\n", "\\n")

    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]]


def series_table(series: Mapping[str, Mapping[int, float]]) -> list[str]:
    layers = sorted({x for v in series.values() for x in v})
    return md_table(["layer", *series], [(x, *[series[k].get(x, float("nan")) for k in series]) for x in layers])
