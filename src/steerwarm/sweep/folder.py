"""A sweep folder, read in one place: SWEEP_DIR/sweep.json (`config`, `points`: label, kind "dial" | "reference",
warmth (None for references), spec, run), one benchmark run folder per point (SWEEP_DIR/<point.run>/results.jsonl)
and optionally SWEEP_DIR/meter.jsonl (per point: p_warm, p_warm_se, nll, nll_se, n).

Invariants:
- Points with no results yet are listed and left out; shared prompt ids must carry the same prompt text in every
  point, else the sweep is refused.
- Dial positions of references: by the dial's calibration the warm fine-tune sits at +1 and the cold one at -1;
  other references have no dial position and are drawn as horizontal lines.
- Matched dial positions (a separate thing, measured rather than assumed): with meter readings, every reference's
  meter row gets `matched_warmth`, the dial value whose answers have the same p_warm (`meter.placement`: the dial
  points' p_warm curve interpolated piecewise-linearly; None outside the measured range or where the curve is not
  monotone around the reading) and `matched_status` saying which ("matched", "above", "below", "ambiguous", ...).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steerwarm.bench.store import RunStore
from steerwarm.bench.summary import cell, records_frame
from steerwarm.meter.placement import dial_match
from steerwarm.records import read_records

if TYPE_CHECKING:
    import pandas as pd

SWEEP_JSON = "sweep.json"  # the settings lock and the points (written by sweep.run)
METER_JSONL = "meter.jsonl"  # one warmth-meter row per point
METER_ANSWERS = "meter-answers.jsonl"  # the meter's answer cache
RUNS = "runs"  # one benchmark run folder per point


# -- loading --------------------------------------------------------------------------------------------------------
@dataclass
class Point:
    label: str
    kind: str  # "dial" | "reference"
    warmth: float | None
    spec: str
    run: str
    frame: pd.DataFrame
    n_prompts: int
    n_scored: int
    refusals: int
    seconds: float

    @property
    def x(self) -> float | None:
        """Position on the dial axis: the warmth of a dial point, +1 / -1 for the warm / cold fine-tune."""
        return self.warmth if self.kind == "dial" else REFERENCE_DIAL.get(self.spec)


@dataclass
class Sweep:
    dir: Path
    config: dict[str, Any]
    sessions: list[dict[str, Any]]
    points: list[Point]  # dial points by warmth, then references in sweep.json order
    missing: list[str]  # labels of points without results
    n_common: int
    restricted: bool

    @property
    def dial(self) -> list[Point]:
        return [p for p in self.points if p.kind == "dial"]

    @property
    def references(self) -> list[Point]:
        return [p for p in self.points if p.kind != "dial"]

    def at(self, warmth: float) -> Point | None:
        return next((p for p in self.dial if p.warmth is not None and abs(p.warmth - warmth) < 1e-9), None)

    @property
    def tasks(self) -> list[str]:
        return sorted({t for p in self.points for t in p.frame["task"].unique()})


def load_sweep(sweep_dir: Path) -> Sweep:
    path = sweep_dir / SWEEP_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no sweep.json; not a sweep folder")
    meta = json.loads(path.read_text())
    points, missing = [], []
    shas: dict[str, str] = {}
    for raw in meta.get("points", []):
        store = RunStore(sweep_dir / raw["run"])
        records = store.load()
        if not records:
            missing.append(raw["label"])
            continue
        for pid, rec in records.items():
            sha = rec.get("prompt_sha")
            if sha is not None and shas.setdefault(pid, sha) != sha:
                raise ValueError(f"prompt {pid} carries different prompt texts in different points of {sweep_dir} "
                                 f"(at {raw['label']}): the points used different items, contexts or seed")
        frame = records_frame(records.values())
        del records
        run = store.read_run() or {}
        seconds = sum(float(s.get("seconds", 0.0)) for s in run.get("sessions", []))
        whole = cell(frame)
        warmth = raw.get("warmth")
        points.append(Point(raw["label"], raw.get("kind", "dial"), None if warmth is None else float(warmth),
                            str(raw.get("spec", raw["label"])), raw["run"], frame, len(frame), whole["n_scored"],
                            whole["refusals"], seconds))
    common = set.intersection(*(set(p.frame["prompt_id"]) for p in points)) if points else set()
    restricted = any(p.n_prompts != len(common) for p in points)
    for p in points:
        if restricted:
            p.frame = p.frame[p.frame["prompt_id"].isin(common)]
        p.frame = p.frame.assign(key=p.frame["task"].astype(str) + "\x1f" + p.frame["item_id"].astype(str))
    dial = sorted((p for p in points if p.kind == "dial"), key=lambda p: p.warmth if p.warmth is not None else 0.0)
    refs = [p for p in points if p.kind != "dial"]
    return Sweep(sweep_dir, meta.get("config", {}), meta.get("sessions", []), dial + refs, missing, len(common),
                 restricted)


# -- meter ----------------------------------------------------------------------------------------------------------
def meter_rows(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """meter.jsonl rows by point label (a torn last line is dropped: its point is metered again)."""
    rows: dict[str, dict[str, Any]] = {}
    for row in read_records(Path(sweep_dir) / METER_JSONL):
        if isinstance(row.get("label"), str):
            rows.setdefault(row["label"], row)
    return rows


def read_meter(sweep: Sweep) -> list[dict[str, Any]] | None:
    """The meter rows of a sweep with each point's kind, spec and dial position, and on reference rows their matched
    dial position (`matched_warmth`, `matched_status`; see the module doc); None without a meter file."""
    if not (sweep.dir / METER_JSONL).is_file():
        return None
    by_label = {p.label: p for p in sweep.points}
    rows = []
    for r in meter_rows(sweep.dir).values():
        point = by_label.get(r.get("label", ""))
        kind = r.get("kind") or (point.kind if point else "dial")
        x = point.x if point else (r.get("warmth") if kind == "dial" else None)
        rows.append({**r, "kind": kind, "spec": point.spec if point else r.get("spec", r.get("label")), "x": x})
    curve = [(float(r["x"]), float(r["p_warm"])) for r in rows
             if r["kind"] == "dial" and r["x"] is not None and r.get("p_warm") is not None]
    for r in rows:
        if r["kind"] != "dial":
            match = dial_match(curve, float(r["p_warm"]) if r.get("p_warm") is not None else math.nan)
            r.update(matched_warmth=match.warmth, matched_status=match.status)
    return rows


REFERENCE_DIAL = {"finetune=warm": 1.0, "finetune=cold": -1.0}
