"""Scorer validation: the fixed dev/held-out split of the labelled items, the kappa bootstrap interval, and the
matcher's agreement with the authors' GPT-4o labels (that last test skips when ../shared/data is absent)."""

from __future__ import annotations

import math
import random

import pytest

from steerwarm.bench.items import Item
from steerwarm.bench.stats import cohen_kappa
from steerwarm.bench.validate import HALVES, LabelledRow, kappa_interval, split_half, validate
from tests.conftest import SHARED_DATA

SAMPLE_DATA = SHARED_DATA / "warm_ai_2025" / "sample_data"


def _row(task: str, item_id: str, row: int) -> LabelledRow:
    item = Item(task, item_id, "q", "a", "b")
    return LabelledRow(f"m/v/{task}_outputs.csv", row, "m", "v", task, item, "p", "o", True, None)


def test_split_is_by_item_balanced_per_task_and_independent_of_row_order() -> None:
    rows = [_row(task, f"{task}:{i}", r) for task in ("trivia", "medqa") for i in range(9) for r in range(3)]
    split = split_half(rows)
    halves: dict[tuple[str, str], set[str]] = {(r.task, r.item.item_id): set() for r in split}
    for r in split:
        halves[(r.task, r.item.item_id)].add(r.half)
    assert all(len(h) == 1 for h in halves.values())  # every row of an item falls in its item's half
    for task in ("trivia", "medqa"):
        dev = sum(1 for (t, _), h in halves.items() if t == task and h == {HALVES[0]})
        assert dev in (4, 5)  # 9 items: alternate hash ranks
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    assert {(r.item.item_id, r.row): r.half for r in split_half(shuffled)} == {
        (r.item.item_id, r.row): r.half for r in split}


def test_kappa_interval() -> None:
    ours = [True] * 30 + [False] * 30
    assert kappa_interval(ours, ours, [str(i) for i in range(60)], "s") == (1.0, 1.0)
    theirs = [True] * 25 + [False] * 5 + [False] * 25 + [True] * 5
    clusters = [str(i // 3) for i in range(60)]
    lo, hi = kappa_interval(ours, theirs, clusters, "s")
    assert lo < cohen_kappa(ours, theirs) < hi and 0.3 < lo and hi < 1.0
    assert kappa_interval(ours, theirs, clusters, "s") == (lo, hi)  # seeded
    assert all(math.isnan(x) for x in kappa_interval([], [], [], "s"))


# Measured with the matcher as committed (eval/validation/validate-judge.md): rows on which the matcher agrees with
# the authors' labels, per task and overall. The matcher and the data are deterministic, so any change moves these
# by whole rows; the margin of one row per task lets one deliberate trade-off through and fails on two.
AGREE = {"all": (315, 271), "disinfo": (80, 77), "medqa": (77, 52), "trivia": (80, 79), "truthfulqa": (78, 63)}


@pytest.mark.skipif(not SAMPLE_DATA.is_dir(), reason="../shared/data/warm_ai_2025/sample_data is absent")
def test_matcher_agreement_with_the_authors_labels() -> None:
    report = validate(SHARED_DATA)
    res = report["scorers"]["matcher"]
    blocks = {"all": res["overall"], **res["per_task"]}
    for task, (n, agree) in AGREE.items():
        assert blocks[task]["n"] == n, task
        assert blocks[task]["agree"] >= agree - (1 if task != "all" else 2), (task, blocks[task]["agree"])
    for half in HALVES:  # both halves are reported, and together they are the whole
        assert sum(b["n"] for b in res["halves"][half]["per_task"].values()) == res["halves"][half]["overall"]["n"]
    assert sum(res["halves"][h]["overall"]["n"] for h in HALVES) == res["overall"]["n"]
    assert all(d["half"] in HALVES for d in report["matcher_disagreements"])
