"""The matched dial position (meter.placement) on synthetic curves with exact answers (dyadic numbers, so the
interpolation is exact in floating point), and its use by the sweep folder's meter rows and `meter compare`."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from steerwarm.meter.compare import dial_warmth, placements
from steerwarm.meter.placement import DialMatch, dial_match, matched_dial_position
from steerwarm.meter.summary import Summary
from steerwarm.records import append_records
from steerwarm.sweep.folder import METER_JSONL, Sweep, read_meter

RISING = [(-1.0, 0.25), (0.0, 0.5), (1.0, 1.0)]


@pytest.mark.parametrize(("p_warm", "expected"), [
    (0.75, 0.5), (0.375, -0.5), (0.5, 0.0), (1.0, 1.0), (0.25, -1.0), (0.625, 0.25)])
def test_monotone_curve_is_inverted_exactly(p_warm: float, expected: float) -> None:
    assert dial_match(RISING, p_warm) == DialMatch(expected, "matched")
    assert matched_dial_position(list(reversed(RISING)), p_warm) == expected  # the order of points is irrelevant


def test_falling_curve_and_readings_outside_the_range() -> None:
    falling = [(-1.0, 0.75), (1.0, 0.25)]
    assert dial_match(falling, 0.5) == DialMatch(0.0, "matched")
    assert dial_match(falling, 0.625) == DialMatch(-0.5, "matched")
    assert dial_match(RISING, 0.125) == DialMatch(None, "below")
    assert dial_match(falling, 0.875) == DialMatch(None, "above")
    assert matched_dial_position(RISING, 0.125) is None


def test_non_monotone_curve_matches_only_where_it_crosses_once() -> None:
    peaked = [(-1.0, 0.25), (0.0, 0.75), (1.0, 0.5)]
    assert dial_match(peaked, 0.625) == DialMatch(None, "ambiguous")  # at -0.25 and at +0.5
    assert dial_match(peaked, 0.375) == DialMatch(-0.75, "matched")  # below the right end's 0.5: one crossing
    assert dial_match(peaked, 0.75) == DialMatch(0.0, "matched")  # the peak itself
    flat = [(-1.0, 0.5), (0.0, 0.5), (1.0, 0.75)]
    assert dial_match(flat, 0.5) == DialMatch(None, "ambiguous")  # the whole flat stretch
    assert dial_match(flat, 0.625) == DialMatch(0.5, "matched")


def test_too_few_points_no_reading_and_duplicates() -> None:
    assert dial_match([(0.0, 0.5)], 0.5) == DialMatch(None, "too few points")
    assert dial_match([(0.0, math.nan), (1.0, 0.5)], 0.5) == DialMatch(None, "too few points")
    assert dial_match(RISING, math.nan) == DialMatch(None, "no reading")
    with pytest.raises(ValueError, match="share a warmth"):
        dial_match([(0.0, 0.25), (0.0, 0.5)], 0.3)


def test_sweep_meter_rows_carry_the_matched_position(tmp_path: Path) -> None:
    rows = [{"label": f"warmth={w:+.2f}", "kind": "dial", "warmth": w, "p_warm": p} for w, p in RISING]
    rows += [{"label": "prompt=warm", "kind": "reference", "spec": "prompt=warm", "p_warm": 0.75},
             {"label": "finetune=cold", "kind": "reference", "spec": "finetune=cold", "p_warm": 0.125}]
    append_records(tmp_path / METER_JSONL, rows)
    sweep = Sweep(tmp_path, {}, [], [], [], 0, False)
    got = {r["label"]: r for r in read_meter(sweep) or []}
    assert (got["prompt=warm"]["matched_warmth"], got["prompt=warm"]["matched_status"]) == (0.5, "matched")
    assert (got["finetune=cold"]["matched_warmth"], got["finetune=cold"]["matched_status"]) == (None, "below")
    assert "matched_warmth" not in got["warmth=+0.00"]


def test_compare_places_other_targets_against_its_dial_targets() -> None:
    def row(p: float) -> dict[str, Summary]:
        return {"p_warm": Summary(p, 0.01, 10)}

    assert [dial_warmth(s) for s in ("base", "warmth=-1", "warmth=x", "prompt=warm")] == [0.0, -1.0, None, None]
    table = {"base": row(0.5), "warmth=1": row(1.0), "warmth=-1": row(0.25), "prompt=warm": row(0.75),
             "prompt=cold": row(0.125)}
    assert placements(table) == {"prompt=warm": DialMatch(0.5, "matched"), "prompt=cold": DialMatch(None, "below")}
    assert placements({"base": row(0.5), "prompt=warm": row(0.75)}) == {}
