"""Summaries of meter readings: the mean over texts and its seeded bootstrap standard error.

Invariant: the same values and seed always give the same summary (the bootstrap generator is seeded).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def bootstrap_se(values: Sequence[float], n_boot: int = 1000, seed: int = 0) -> float:
    """Bootstrap standard error of the mean."""
    arr = np.asarray(values, dtype=float)
    if len(arr) < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, len(arr), size=(n_boot, len(arr)))].mean(axis=1)
    return float(means.std(ddof=1))


@dataclass(frozen=True)
class Summary:
    mean: float
    se: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.se:.4f} (n={self.n})"


def summarize(values: Sequence[float], seed: int = 0) -> Summary:
    vals = [v for v in values if not math.isnan(v)]
    return Summary(float(np.mean(vals)) if vals else float("nan"), bootstrap_se(vals, seed=seed), len(vals))
