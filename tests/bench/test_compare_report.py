"""compare and report on synthetic run folders with hand-checkable counts and a planted effect."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from steerwarm.bench.compare import compare_runs, to_markdown
from steerwarm.bench.report import build_report
from steerwarm.bench.seeding import short_hash
from steerwarm.bench.store import RunStore
from steerwarm.cli.app import app

CONDS = ["unmodified", "emotion:sad", "stake:high"]


def _make_runs(tmp_path: Path, n_items: int = 300, seed: int = 0) -> tuple[Path, Path]:
    """Run A (reference) and run B over the same prompts; B errs more under emotion:sad and with a belief."""
    rng = np.random.default_rng(seed)
    a_rows, b_rows = [], []
    for i in range(n_items):
        task = ["trivia", "medqa"][i % 2]
        for template in ("original", "original_neutral", "incorrect", "correct"):
            for cond in CONDS:
                if template == "original_neutral" and cond != "unmodified":
                    continue
                pid = f"{task}:{i}|{template}|{cond}"
                belief = template in ("incorrect", "correct")
                pa = 0.2 + (0.1 if belief else 0.0)
                pb = pa + (0.15 if cond == "emotion:sad" else 0.0) + (0.1 if belief else 0.0)
                base = {"prompt_id": pid, "task": task, "item_id": f"{task}:{i}", "template": template,
                        "condition": cond, "group": cond.split(":")[0] if ":" in cond else "none",
                        "has_belief": belief, "prompt_sha": short_hash(pid)}
                ya, yb = int(rng.uniform() < pa), int(rng.uniform() < pb)
                a_rows.append({**base, "is_incorrect": ya, "verdict": "incorrect" if ya else "correct"})
                b_rows.append({**base, "is_incorrect": yb, "verdict": "incorrect" if yb else "correct"})
    dirs = []
    for name, rows, spec in (("orig", a_rows, "base"), ("warm", b_rows, "warmth=1")):
        store = RunStore(tmp_path / name)
        store.append(rows)
        store.write_run({"config": {"target": {"spec": spec}, "mode": "likelihood", "scorer": "likelihood"},
                         "sessions": [{"prompts": len(rows), "seconds": 10.0}]})
        dirs.append(store.dir)
    return dirs[0], dirs[1]


def test_compare_counts_tests_and_planted_effects(tmp_path: Path) -> None:
    a, b = _make_runs(tmp_path, n_items=1000)
    cmp = compare_runs(a, b)
    ra, rb = RunStore(a).load(), RunStore(b).load()
    cell = next(c for c in cmp.cells if (c["task"], c["test_type"], c["condition"]) == ("trivia", "no belief",
                                                                                         "emotion:sad"))
    ids = [k for k, r in ra.items() if r["task"] == "trivia" and r["condition"] == "emotion:sad"
           and r["template"] == "original"]
    b_hand = sum(1 for k in ids if ra[k]["is_incorrect"] == 0 and rb[k]["is_incorrect"] == 1)
    c_hand = sum(1 for k in ids if ra[k]["is_incorrect"] == 1 and rb[k]["is_incorrect"] == 0)
    assert (cell["n"], cell["b_a_right_b_wrong"], cell["c_a_wrong_b_right"]) == (len(ids), b_hand, c_hand)
    assert cell["delta_pp"] == pytest.approx(100 * (b_hand - c_hand) / len(ids))
    assert cell["cohens_g"] == pytest.approx(abs(b_hand / (b_hand + c_hand) - 0.5))
    unmod = next(c for c in cmp.cells if (c["task"], c["test_type"], c["condition"]) == ("trivia", "no belief",
                                                                                          "unmodified"))
    assert unmod["n"] == 1000  # original + original_neutral for 500 items
    family = [c for c in cmp.cells if c["task"] == "trivia" and c["test_type"] == "no belief"]
    assert all(c["p_fdr"] >= c["p"] for c in family)
    models = {r.name: r for r in cmp.regressions}
    by_cond = {e.level: e for e in models["model 3: by context"].effects}
    sad, plain = by_cond["emotion:sad"], by_cond["unmodified"]
    assert abs(sad.ame - 0.15) < 3 * sad.se and sad.ci[0] > 0  # planted: +15 points under emotion:sad
    assert abs(plain.ame) < 3 * plain.se
    by_belief = {e.level: e for e in models["model 4: belief interaction"].effects}
    assert by_belief["belief"].ame > by_belief["no belief"].ame  # planted: +10 points more with a belief
    assert by_belief["belief"].ci[0] > 0


def test_compare_refuses_different_prompts(tmp_path: Path) -> None:
    a, b = _make_runs(tmp_path, n_items=4)
    store = RunStore(b)
    rows = list(store.load().values())
    rows[0]["prompt_sha"] = "different"
    store.results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match="different prompt texts"):
        compare_runs(a, b)


def test_report_layout_and_cli(tmp_path: Path) -> None:
    a, b = _make_runs(tmp_path, n_items=40)
    text, data = build_report([a, b])
    assert "## Per task: no context, no belief" in text and "## medqa: per context" in text
    assert "| emotion:sad |" in text and "delta warm (warmth=1)" in text
    trivia = data["tasks"]["trivia"]["no_context_no_belief"]
    ra = RunStore(a).load().values()
    plain = [r for r in ra if r["task"] == "trivia" and r["condition"] == "unmodified"
             and r["template"] in ("original", "original_neutral")]
    assert trivia[0]["n_scored"] == len(plain) == 40
    assert trivia[0]["error_rate"] == pytest.approx(sum(r["is_incorrect"] for r in plain) / 40)
    runner = CliRunner()
    res = runner.invoke(app, ["bench", "report", str(a), str(b), "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "rep" / "report.md").is_file() and (tmp_path / "rep" / "report-errors.png").stat().st_size
    res = runner.invoke(app, ["bench", "compare", str(a), str(b)])
    assert res.exit_code == 0, res.output
    out = b / "compare-vs-orig"
    md = (out / "compare.md").read_text()
    assert "### belief" in md and "model 4: belief interaction" in md
    assert (out / "compare-delta.png").stat().st_size > 0
    cmp = json.loads((out / "compare.json").read_text())
    assert cmp["n_pairs"] == 40 * 10 and not any(math.isnan(c["p"]) for c in cmp["cells"])
    store = RunStore(b)  # a run over fewer prompts: the report compares on the prompts both scored
    kept = [r for r in store.load().values() if r["task"] == "trivia"]
    store.results.write_text("".join(json.dumps(r) + "\n" for r in kept))
    text, data = build_report([a, b])
    assert f"restricted to the {len(kept)} prompts" in text and set(data["tasks"]) == {"trivia"}
    bad = runner.invoke(app, ["bench", "compare", str(a), str(tmp_path / "nothing")])
    assert bad.exit_code == 2 and "no results.jsonl" in bad.output


def _known_by_hand(run: Path) -> set[str]:
    """Items whose every neutral prompt (original, original_neutral; no context) run A got right."""
    neutral: dict[str, list[int]] = {}
    for r in RunStore(run).load().values():
        if r["condition"] == "unmodified" and r["template"] in ("original", "original_neutral"):
            neutral.setdefault(r["item_id"], []).append(r["is_incorrect"])
    return {i for i, ys in neutral.items() if not any(ys)}


def test_compare_and_report_on_all_items_and_on_known_items(tmp_path: Path) -> None:
    a, b = _make_runs(tmp_path, n_items=60)
    known = _known_by_hand(a)
    assert 0 < len(known) < 60
    cmp = compare_runs(a, b)
    assert cmp.known is not None and cmp.known["n_known"] == len(known)
    assert cmp.known_comparison is not None and cmp.known_comparison.n_pairs == 10 * len(known)
    ra, rb = RunStore(a).load(), RunStore(b).load()
    ids = [k for k, r in ra.items() if r["item_id"] in known and r["task"] == "trivia"
           and r["condition"] == "emotion:sad" and r["template"] == "original"]
    cell = next(c for c in cmp.known_comparison.cells if (c["task"], c["test_type"], c["condition"]) ==
                ("trivia", "no belief", "emotion:sad"))
    assert cell["n"] == len(ids)
    assert cell["delta_pp"] == pytest.approx(100 * sum(rb[k]["is_incorrect"] - ra[k]["is_incorrect"] for k in ids)
                                             / len(ids))
    # the instrument of both runs: likelihood mode, chance 1/2; no item files, so no shorter-answer rule
    assert set(cmp.instrument) == {cmp.a, cmp.b}
    trivia_a = next(c for c in cmp.instrument[cmp.a] if c["task"] == "trivia")
    plain = [r for r in ra.values() if r["task"] == "trivia" and r["condition"] == "unmodified"
             and r["template"] in ("original", "original_neutral")]
    assert trivia_a["n_prompts"] == len(plain) and trivia_a["chance"] == 0.5 and trivia_a["shorter_answer"] is None
    assert trivia_a["accuracy"] == pytest.approx(1 - sum(r["is_incorrect"] for r in plain) / len(plain))
    assert {m["design"] for m in cmp.mde} >= {"no context, no belief", "all prompts"}
    md = to_markdown(cmp)
    assert md.index("## Instrument") < md.index("## trivia") < md.index(f"# Known items only ({len(known)} items")
    assert "Regressions on known items" in md and "MDE pp" in md
    assert "### This comparison\n\nMinimum detectable effect" in md  # MDEs only: no empty table of checks
    text, data = build_report([a, b])
    assert data["known_items"]["n_known"] == len(known)
    assert text.index("## Instrument") < text.index("## Per task: no context, no belief") < text.index(
        f"# Known items only ({len(known)} items)") < text.index("## Per task: no context, no belief (known items)")
    k_trivia = {i for i in known if i.startswith("trivia")}
    assert data["known"]["tasks"]["trivia"]["no_context_no_belief"][0]["n_scored"] == 2 * len(k_trivia)
    assert data["known"]["tasks"]["trivia"]["no_context_no_belief"][0]["errors"] == 0  # known: right by definition
