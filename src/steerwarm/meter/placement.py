"""Place a target on the dial scale by its warmth meter reading: the dial value whose answers have the same p_warm.

The dial points' readings (warmth, p_warm) are joined, in order of warmth, by straight lines (piecewise-linear
interpolation; the dial is expected to be monotone in p_warm, rising or falling). The matched dial position of a
reading is the warmth where that curve takes it:
- "matched": the curve takes the reading at exactly one warmth (a reading equal to a dial point's is that point's
  warmth). A curve that is not monotone elsewhere still matches where it crosses the reading only once.
- "ambiguous": the curve takes the reading at two or more warmths (it is not monotone around it), or all along a
  flat stretch: no single dial value answers as warm, so none is given.
- "above" / "below": the reading is higher / lower than every dial point's: the target lies outside the measured
  range, and nothing is extrapolated.
- "too few points": fewer than two dial points with a reading; "no reading": the target's p_warm is NaN.
Only "matched" gives a position; every other status gives None.

Invariant: the result depends only on the set of (warmth, p_warm) points, not on their order; two dial points at
the same warmth are an error (the curve would not be a function).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass

MATCHED, AMBIGUOUS, ABOVE, BELOW, TOO_FEW, NO_READING = (
    "matched", "ambiguous", "above", "below", "too few points", "no reading")
SAME_POINT = 1e-12  # warmths closer than this are one crossing (a reading equal to a dial point's, met by 2 segments)


@dataclass(frozen=True)
class DialMatch:
    """Where a meter reading sits on the dial: `warmth` when `status` is "matched", else None."""

    warmth: float | None
    status: str


def dial_match(dial_points: Iterable[tuple[float, float]], p_warm: float) -> DialMatch:
    """The dial position with the same p_warm as `p_warm`, and why there is none when there is none (module doc).
    `dial_points`: (warmth, p_warm) per dial point; points whose p_warm is NaN are left out."""
    points = sorted((float(w), float(p)) for w, p in dial_points if not math.isnan(p))
    warmths = [w for w, _ in points]
    if len(set(warmths)) != len(warmths):
        raise ValueError(f"two dial points share a warmth: {sorted(warmths)}")
    if math.isnan(p_warm):
        return DialMatch(None, NO_READING)
    if len(points) < 2:
        return DialMatch(None, TOO_FEW)
    ys = [p for _, p in points]
    if p_warm > max(ys):
        return DialMatch(None, ABOVE)
    if p_warm < min(ys):
        return DialMatch(None, BELOW)
    crossings: list[float] = []
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if y0 == y1:
            if y0 == p_warm:
                return DialMatch(None, AMBIGUOUS)  # the whole flat stretch matches
            continue
        if min(y0, y1) <= p_warm <= max(y0, y1):
            # a reading equal to a dial point's is that point's warmth, exactly
            x = x0 if p_warm == y0 else x1 if p_warm == y1 else x0 + (p_warm - y0) * (x1 - x0) / (y1 - y0)
            if not crossings or abs(x - crossings[-1]) > SAME_POINT:
                crossings.append(x)
    if len(crossings) == 1:
        return DialMatch(crossings[0], MATCHED)
    return DialMatch(None, AMBIGUOUS)


def matched_dial_position(dial_points: Iterable[tuple[float, float]], p_warm: float) -> float | None:
    """The dial value whose answers have this p_warm, or None (outside the measured range, ambiguous, too few
    points; see `dial_match` for which)."""
    return dial_match(dial_points, p_warm).warmth
