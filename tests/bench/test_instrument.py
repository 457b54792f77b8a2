"""The instrument: the MDE against a simulation with a planted effect, known items on a hand-made run, the instrument
check's flags and baselines, and `bench plan` with a pilot of the tiny model."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from steerwarm.bench.contexts import load_contexts
from steerwarm.bench.instrument import (
    belief_pairs,
    instrument_check,
    item_design_effect,
    known_items,
    paired_mde,
    plan_items,
    shorter_answer_accuracy,
    task_instrument,
)
from steerwarm.bench.items import Item, load_items
from steerwarm.bench.prompts import grid_cells
from steerwarm.bench.stats import independent_discordance, mcnemar, mcnemar_mde, mcnemar_n
from steerwarm.bench.summary import records_frame
from steerwarm.cli.app import app


# -- MDE ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "psi"), [(400, 0.15), (1500, 0.30)])
def test_planted_effect_of_the_mde_is_found_80_percent_of_the_time(n: int, psi: float) -> None:
    """1000 simulated paired runs (pairs multinomial: A right & B wrong, A wrong & B right, concordant) with an
    effect of exactly the MDE, tested with our McNemar: detected 80% of the time within 3.5 binomial standard
    deviations (0.0126 each; the approximation's own bias at these sizes is under 0.015, by exact summation)."""
    d = mcnemar_mde(n, psi)
    rng = np.random.default_rng(n)

    def rate(effect: float) -> float:
        counts = rng.multinomial(n, [(psi + effect) / 2, (psi - effect) / 2, 1 - psi], size=1000)
        return float(np.mean([mcnemar(int(b), int(c)).p_value < 0.05 for b, c, _ in counts]))

    assert abs(rate(d) - 0.80) < 0.045
    assert rate(d / 2) < 0.40  # half the MDE: power about 0.28
    assert mcnemar_n(d, psi) == n  # plan inverts the MDE exactly


def test_mde_formula_by_hand() -> None:
    # psi 0.2, delta 0.05: K = 1.959964 sqrt(.2) + 0.841621 sqrt(.1975) = 1.250552;
    # sqrt(n) = (K + sqrt(K^2 + 0.2)) / 0.1 = 25.7866 -> n = 664.95 -> 665 (Connor's, no correction: 625.6 -> 626)
    assert mcnemar_n(0.05, 0.2) == 665
    assert mcnemar_mde(665, 0.2) <= 0.05 < mcnemar_mde(664, 0.2)
    assert math.isnan(mcnemar_mde(10, 0.01))  # 0.1 discordant pairs: nothing is detectable
    assert independent_discordance(0.3, 0.07) == pytest.approx(0.3 * 0.63 + 0.37 * 0.7)
    with pytest.raises(ValueError, match="discordance rate of at least"):
        mcnemar_n(0.2, 0.1)


# -- known items ----------------------------------------------------------------------------------------------------
def _rec(task: str, item: str, template: str, condition: str, wrong: int | None, lp_c: float | None = None,
         lp_w: float | None = None) -> dict[str, Any]:
    return {"prompt_id": f"{task}:{item}|{template}|{condition}", "task": task, "item_id": f"{task}:{item}",
            "template": template, "condition": condition, "group": "none" if condition == "unmodified" else "emotion",
            "has_belief": template in ("incorrect", "correct"), "is_incorrect": wrong,
            "verdict": "refusal" if wrong is None else "incorrect" if wrong else "correct",
            "lp_correct": lp_c, "lp_wrong": lp_w}


def _neutral(task: str, item: str, margins: tuple[float, float]) -> list[dict[str, Any]]:
    return [_rec(task, item, t, "unmodified", int(m < 0), -1.0 + m, -1.0) for t, m in
            zip(("original", "original_neutral"), margins, strict=True)]


def test_known_items_are_exactly_the_items_known_with_a_margin_in_every_neutral_prompt() -> None:
    rows = [
        *_neutral("trivia", "a", (0.5, 0.3)),  # known
        *_neutral("trivia", "b", (0.5, 0.05)),  # right, but by less than the margin once
        *_neutral("trivia", "c", (0.5, -0.2)),  # wrong once
        *_neutral("trivia", "d", (0.2, 0.11)),  # known, although it errs under a context and with a belief:
        _rec("trivia", "d", "original", "emotion:sad", 1, -2.0, -1.0),
        _rec("trivia", "d", "incorrect", "unmodified", 1, -2.0, -1.0),
        *_neutral("medqa", "a", (0.3, 0.4)),  # known; the same raw id as trivia's a, another task
        _rec("medqa", "e", "original", "emotion:sad", 0, -0.1, -3.0),  # no neutral prompt: not known
    ]
    df = records_frame(rows)
    known = known_items(df, "likelihood")
    assert known.keys == {("trivia", "trivia:a"), ("trivia", "trivia:d"), ("medqa", "medqa:a")}
    assert known.per_task == {"medqa": (1, 1), "trivia": (2, 4)}
    assert "lp_correct - lp_wrong > 0.1" in known.rule
    assert set(known.restrict(df)["item_id"]) == {"trivia:a", "trivia:d", "medqa:a"}
    assert len(known.restrict(df)) == 8
    # a stricter margin drops d (0.11) and keeps a, medqa a; in generate mode (verdicts) b is known too
    assert known_items(df, "likelihood", margin=0.2).keys == {("trivia", "trivia:a"), ("medqa", "medqa:a")}
    assert known_items(df, "generate").keys == {("trivia", f"trivia:{i}") for i in "abd"} | {("medqa", "medqa:a")}
    # a refusal is not a correct answer: the item is not known
    refused = records_frame([*_neutral("trivia", "a", (0.5, 0.3))[:1], _rec("trivia", "a", "original_neutral",
                                                                          "unmodified", None)])
    assert known_items(refused, "generate").keys == frozenset()


# -- instrument check -----------------------------------------------------------------------------------------------
def _item(correct: str, wrong: str, task: str = "trivia", i: int = 0) -> Item:
    return Item(task, f"{task}:{i}", "q?", correct, wrong)


def test_shorter_answer_rule_from_the_replies() -> None:
    items = [_item("cup", "water", i=0), _item("night", "day", i=1), _item("3", "4", i=2), _item("tea", "milk", i=3)]
    assert shorter_answer_accuracy(items) == (1 + 0 + 0.5 + 1) / 4
    disinfo = [_item("The sky is blue.", "The sky is not blue.", "disinfo")]
    assert shorter_answer_accuracy(disinfo) == 1.0


def _neutral_frame(task: str, n_items: int, n_wrong: int) -> Any:
    rows = []
    for i in range(n_items):
        for t in ("original", "original_neutral"):
            rows.append(_rec(task, str(i), t, "unmodified", int(i < n_wrong // 2 or (t == "original" and
                                                                                    i < n_wrong - n_wrong // 2))))
    return records_frame(rows)


def test_instrument_flags_a_task_at_chance_or_below_the_shorter_answer_rule() -> None:
    below = _neutral_frame("trivia", 50, 55)  # accuracy 45% of 100 prompts
    c = task_instrument("trivia", "likelihood", below, None)
    assert (c.n_prompts, c.n_items, c.correct) == (100, 50, 45)
    assert c.can_measure is False and "chance" in c.reason and c.shorter is None
    good = _neutral_frame("trivia", 50, 20)  # 80%, Wilson [71.1%, 86.7%]
    items = [_item("cup", "water", i=i) for i in range(50)]  # the shorter-answer rule scores 100% on these
    c = task_instrument("trivia", "likelihood", good, items)
    assert c.accuracy == 0.8 and c.shorter == 1.0 and c.can_measure is False
    assert "shorter-answer rule" in c.reason and "chance" not in c.reason.split(":")[0]
    items = [_item("water", "cup", i=i) for i in range(50)]  # ... and 0% on these
    c = task_instrument("trivia", "likelihood", good, items)
    assert c.can_measure is True and c.ci_low == pytest.approx(0.7112, abs=1e-4)
    # generate mode: MedQA's chance is 1/k of its options; open answers have none
    opts = tuple("abcde")
    med = [Item("medqa", f"medqa:{i}", "q", "a", "b", options=opts) for i in range(50)]
    c = task_instrument("medqa", "generate", _neutral_frame("medqa", 50, 20), med)
    assert c.chance == pytest.approx(0.2) and c.can_measure is True and c.shorter is None
    open_answers = instrument_check(good, "generate")
    assert open_answers[0].chance is None and open_answers[0].can_measure is None
    never = instrument_check(_neutral_frame("trivia", 5, 10), "generate")[0]  # 0 of 10 right: Wilson [0%, 27.8%]
    assert never.accuracy == 0.0 and never.can_measure is False and "reaches 0%" in never.reason


def test_belief_pairs_match_each_belief_prompt_with_its_control() -> None:
    rows = [_rec("trivia", "a", "original_neutral", "unmodified", 0), _rec("trivia", "a", "original", "unmodified", 1),
            _rec("trivia", "a", "incorrect", "unmodified", 1), _rec("trivia", "a", "correct", "unmodified", 0),
            _rec("trivia", "a", "original", "emotion:sad", 0), _rec("trivia", "a", "incorrect", "emotion:sad", 1)]
    pairs = belief_pairs(records_frame(rows))
    # under no context the control is original_neutral (a = 0), under a context the original template
    assert sorted(zip(pairs["condition"], pairs["a"], pairs["b"], strict=True)) == [
        ("emotion:sad", 0, 1), ("unmodified", 0, 0), ("unmodified", 0, 1)]


# -- plan -----------------------------------------------------------------------------------------------------------
def test_plan_cli_pilots_the_tiny_model(tiny_folder: Path, tiny_items: dict[str, Path], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the pilot's run.json names its item files relative to here, so they resolve
    out = tmp_path / "plan.json"
    res = CliRunner().invoke(app, ["bench", "plan", "--target", str(tiny_folder), "--effect", "7", "--tasks",
                                   "trivia,disinfo", "--pilot", "2", "--items", f"trivia={tiny_items['trivia']}",
                                   "--items", f"disinfo={tiny_items['disinfo']}", "--pilot-out",
                                   str(tmp_path / "pilot"), "--json", str(out)])
    assert res.exit_code == 0, res.output
    plans = {p["task"]: p for p in json.loads(out.read_text())}
    summary = json.loads((tmp_path / "pilot" / "summary.json").read_text())
    results = [json.loads(x) for x in (tmp_path / "pilot" / "results.jsonl").read_text().splitlines()]
    assert {(r["template"], r["condition"]) for r in results} == {("original", "unmodified"),
                                                                  ("original_neutral", "unmodified")}
    cells = grid_cells(load_contexts(None))
    for task in ("trivia", "disinfo"):
        mine = [r for r in results if r["task"] == task]
        assert len(mine) == 4  # 2 items x 2 neutral prompts
        err = sum(r["is_incorrect"] for r in mine) / 4
        p = plans[task]
        assert p["error"] == err and p["error_source"].startswith("measured: pilot, 4 neutral prompts")
        assert p["discordance_source"].startswith("assumed")
        expected = plan_items(task, 7.0, err, p["error_source"], cells).record()["designs"]
        assert p["designs"] == expected
        full = next(d for d in p["designs"] if d["design"] == "all prompts of the grid")
        assert full["prompts_per_item"] == len(cells) and full["prompts"] == full["items"] * len(cells)
        assert p["available_items"] == len(load_items(task, tiny_items[task]).items)
        # the instrument verdict of the pilot, with the shorter-answer rule computed from the items
        check = p["instrument"]
        assert check["n_prompts"] == 4 and check["accuracy"] == 1 - err and check["chance"] == 0.5
        first_two = load_items(task, tiny_items[task]).items[:2]
        assert check["shorter_answer"] == shorter_answer_accuracy(first_two)
        # the pilot's own summary.json carries the same check (its item files found through run.json)
        assert summary["instrument"]["tasks"][task] == check
    assert "trivia: detect +7 pp" in res.output and "pilot instrument check" in res.output
    assert plans["trivia"]["instrument"]["shorter_answer"] == 0.5  # cup < water, night > day
    bad = CliRunner().invoke(app, ["bench", "plan", "--effect", "7", "--tasks", "trivia"])
    assert bad.exit_code == 2 and "--target is needed" in bad.output


def test_bench_run_prints_the_instrument(tiny_folder: Path, tiny_items: dict[str, Path], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["bench", "run", "--target", str(tiny_folder), "--out", str(out), "--tasks",
                                   "trivia", "--items", str(tiny_items["trivia"]), "--templates",
                                   "original,original_neutral,incorrect", "--conditions", "unmodified",
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    block = json.loads((out / "summary.json").read_text())["instrument"]
    check = block["tasks"]["trivia"]
    assert check["n_prompts"] == 6 and check["shorter_answer"] == 0.5 and block["notes"] == []
    assert f"instrument trivia: accuracy {100 * check['accuracy']:.1f}%" in res.output
    assert "known items: " in res.output and "MDE trivia, no context, no belief" in res.output
    designs = {m["design"]: m for m in block["mde"]["comparison"]}
    assert designs["no context, no belief"]["n_pairs"] == 6 and designs["all prompts"]["n_pairs"] == 9
    assert "no belief" not in designs  # the same 6 prompts as the neutral design here: not repeated
    assert block["mde"]["belief_effect"][0]["n_pairs"] == 3  # incorrect vs original_neutral, 3 items
    lps = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    margins: dict[str, list[float]] = {}
    for r in lps:
        if r["template"] != "incorrect":
            margins.setdefault(r["item_id"], []).append(r["lp_correct"] - r["lp_wrong"])
    assert block["known_items"]["n_known"] == sum(min(m) > 0.1 for m in margins.values())


def test_item_design_effect_measures_how_one_items_prompts_move_together() -> None:
    import pandas as pd

    def pairs(ds: list[list[int]]) -> pd.DataFrame:
        rows = [{"task": "trivia", "item_id": f"trivia:{i}", "a": int(d < 0), "b": int(d > 0)}
                for i, item in enumerate(ds) for d in item]
        return pd.DataFrame(rows)

    # every item's 4 prompts agree (d = +1, +1, +1, +1 or -1 x 4, mean 0): clustered variance 4x the independent one
    assert item_design_effect(pairs([[1] * 4, [-1] * 4, [0] * 4, [1] * 4, [-1] * 4])) == 4.0
    # within each item the differences cancel: DEFF 0; by hand with an effect: d = (1, 1), (1, 0), (0, -1), mean 1/3
    assert item_design_effect(pairs([[1, -1], [-1, 1]])) == 0.0
    by_hand = ((2 - 2 / 3) ** 2 + (1 - 2 / 3) ** 2 + (-1 - 2 / 3) ** 2) / (
        3 * (2 / 3) ** 2 + 2 * (1 / 3) ** 2 + (4 / 3) ** 2)
    assert item_design_effect(pairs([[1, 1], [1, 0], [0, -1]])) == pytest.approx(by_hand)
    assert math.isnan(item_design_effect(pairs([[0, 0]])))
    # independent prompts: about 1 (4000 items x 3 prompts, discordance 30%; sd of the estimate about 0.03)
    rng = np.random.default_rng(7)
    d = rng.choice([-1, 0, 1], p=[0.15, 0.7, 0.15], size=(4000, 3)).tolist()
    assert abs(item_design_effect(pairs(d)) - 1.0) < 0.12
    entry = paired_mde(pairs([[1] * 4, [-1] * 4, [0] * 4] * 30).assign(template="original", condition="x"))
    assert entry[0]["mde_items_pp"] == pytest.approx(entry[0]["mde_pp"] * 2)
