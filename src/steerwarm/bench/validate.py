"""Validate our scorers against the authors' GPT-4o labels in ../shared/data/warm_ai_2025/sample_data/.

Each of the 16 sample files (2 models x original/warm x 4 tasks) holds prompts, model outputs, the GPT-4o verdict
(`evaluation`: CORRECT/INCORRECT) and, in most files, a `refusal` flag. Rows whose file lacks the answers (the qwen
warm files keep only a key) are joined to the paper's items: trivia/truthfulqa by content_key, disinfo by
prompt_disinfo, medqa by the original vignette (5-option file). We score every output with the reference matcher
(and the LLM judge when an endpoint is given) and report, per scorer and task, agreement and Cohen's kappa with the
authors' labels on the rows that neither side calls a refusal, plus how refusals line up.

Honest validation: the labelled items are split once into a development half and a held-out half by a fixed rule
(`split_half`: per task, the items ranked by a seeded hash of their id, alternate ranks to each half; every row of an
item falls in its item's half, so a question seen while developing the matcher is never in the held-out half). The
report gives agreement and kappa on development, held-out and all rows, each kappa with a 95% percentile interval
of a seeded bootstrap over items (rows of one item are resampled together).

Invariants: read-only on the shared data, and the written report quotes none of it (disagreements are listed by
file and row); the report is a pure function of the sample files and the scorers; a row that cannot be joined to
its item is counted as unjoined, never guessed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from steerwarm.bench.items import Item, load_items
from steerwarm.bench.judge import Judge
from steerwarm.bench.scoring import Verdict, matcher_verdict
from steerwarm.bench.seeding import stable_int
from steerwarm.bench.stats import cohen_kappa, wilson
from steerwarm.paths import shared_data


@dataclass(frozen=True)
class LabelledRow:
    file: str
    row: int
    model: str
    variant: str
    task: str
    item: Item
    prompt: str
    output: str
    label_correct: bool
    label_refusal: bool | None
    half: str = ""  # "dev" or "held-out" (split_half); "" before the split


HALVES = ("dev", "held-out")
SPLIT_SEED = "validate-judge-split"
BOOTSTRAP = 2000
KAPPA_TARGET = 0.6  # the agreement a scorer needs before its error rates are read as the paper's


def split_half(rows: Sequence[LabelledRow]) -> list[LabelledRow]:
    """The rows with `half` set: per task, items ranked by stable_int(SPLIT_SEED, task, item_id), even ranks dev."""
    ids: dict[str, set[str]] = {}
    for r in rows:
        ids.setdefault(r.task, set()).add(r.item.item_id)
    dev = {(task, i) for task, s in ids.items()
           for i in sorted(s, key=lambda i: (stable_int(SPLIT_SEED, task, i), i))[0::2]}
    return [replace(r, half=HALVES[0] if (r.task, r.item.item_id) in dev else HALVES[1]) for r in rows]


def kappa_interval(ours: Sequence[bool], theirs: Sequence[bool], clusters: Sequence[str], seed: str,
                   n_boot: int = BOOTSTRAP) -> tuple[float, float]:
    """95% percentile interval of Cohen's kappa (two labels) from a seeded bootstrap over clusters (items)."""
    if not ours:
        return (float("nan"), float("nan"))
    keys = sorted(set(clusters))
    index = {k: j for j, k in enumerate(keys)}
    counts = np.zeros((len(keys), 4))  # per cluster: both correct, ours only, theirs only, both incorrect
    for a, b, c in zip(ours, theirs, clusters, strict=True):
        counts[index[c], (0 if a else 2) + (0 if b else 1)] += 1
    rng = np.random.default_rng(stable_int("validate-judge-kappa", seed))
    draws = rng.multinomial(len(keys), np.full(len(keys), 1 / len(keys)), size=n_boot)
    tot = draws @ counts
    n = tot.sum(axis=1)
    po = (tot[:, 0] + tot[:, 3]) / n
    p_ours, p_theirs = (tot[:, 0] + tot[:, 1]) / n, (tot[:, 0] + tot[:, 2]) / n
    pe = p_ours * p_theirs + (1 - p_ours) * (1 - p_theirs)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.where(pe < 1, (po - pe) / (1 - pe), np.where(po == 1, 1.0, np.nan))
    kappa = kappa[~np.isnan(kappa)]
    if kappa.size == 0:
        return (float("nan"), float("nan"))
    lo, hi = np.percentile(kappa, [2.5, 97.5])
    return (float(lo), float(hi))


def _clean_output(text: str) -> str:
    # Some outputs keep the chat role header ("assistant\n\n...") from the authors' decoding.
    return text[len("assistant"):].lstrip() if text.startswith("assistant\n") else text


def load_labelled(shared: Path | None = None) -> tuple[list[LabelledRow], int]:
    """All joinable labelled rows and the number of rows that could not be joined."""
    import pandas as pd

    shared = shared if shared is not None else shared_data()
    base = shared / "warm_ai_2025" / "sample_data"
    if not base.is_dir():
        raise FileNotFoundError(f"{base} not found: validation needs the shared data folder")
    trivia = {it.question: it for it in load_items("trivia", shared / "triviaqa" / "warm_ai_trivia_items.jsonl").items}
    tqa = {it.question: it for it in
           load_items("truthfulqa", shared / "truthfulqa" / "warm_ai_truthfulqa_items.jsonl").items}
    disinfo = {it.question: it for it in load_items("disinfo", shared / "mask" / "disinfo_items.jsonl").items}
    medqa = {it.original_question: it for it in
             load_items("medqa", shared / "medqa" / "medqa_usmle_5options_test.jsonl", medqa_sample=None).items}
    rows: list[LabelledRow] = []
    unjoined = 0
    for path in sorted(base.glob("*/*/*_outputs.csv")):
        model, variant = path.parts[-3], path.parts[-2]
        task = path.name.split("_")[0]
        df = pd.read_csv(path, keep_default_na=False)
        for row, (_, r) in enumerate(df.iterrows()):
            item: Item | None
            if task in ("trivia", "truthfulqa"):
                found = (trivia if task == "trivia" else tqa).get(str(r["content_key"]))
                item = found
                if "correct_answer" in r and r["correct_answer"] and found is not None:
                    item = Item(task, found.item_id, found.question, str(r["correct_answer"]),
                                str(r["incorrect_answer"]))
            elif task == "disinfo":
                item = disinfo.get(str(r["prompt_disinfo"]))
            else:
                item = medqa.get(str(r["original_question"]))
                if item is not None and "question" in r:
                    item = Item(task, item.item_id, str(r["question"]), item.correct,
                                str(r.get("wrong_answer", item.wrong)), item.options, item.original_question)
            if item is None:
                unjoined += 1
                continue
            ref = r.get("refusal", "")
            rows.append(LabelledRow(f"{model}/{variant}/{path.name}", row, model, variant, task, item,
                                    str(r.get("prompt", "")), _clean_output(str(r["output"])),
                                    str(r["evaluation"]).upper() == "CORRECT", None if ref == "" else str(ref) == "1"))
    return split_half(rows), unjoined


def agreement(rows: Sequence[LabelledRow], verdicts: Sequence[Verdict]) -> dict[str, Any]:
    """Agreement and kappa (with its bootstrap interval) on rows neither side calls a refusal, overall and per task,
    on all rows and on each half; refusal cross-tab."""

    def block(idx: list[int], scope: str) -> dict[str, Any]:
        ours = [verdicts[i].verdict == "correct" for i in idx]
        theirs = [rows[i].label_correct for i in idx]
        n = len(idx)
        agree = sum(a == b for a, b in zip(ours, theirs, strict=True))
        lo, hi = wilson(agree, n)
        kappa = cohen_kappa(ours, theirs) if n else float("nan")
        k_lo, k_hi = kappa_interval(ours, theirs, [f"{rows[i].task}/{rows[i].item.item_id}" for i in idx], scope)
        return {"n": n, "agree": agree, "agreement": agree / n if n else float("nan"), "agreement_ci": [lo, hi],
                "kappa": kappa, "kappa_ci": [k_lo, k_hi],
                "confusion": {"both_correct": sum(a and b for a, b in zip(ours, theirs, strict=True)),
                              "both_incorrect": sum(not a and not b for a, b in zip(ours, theirs, strict=True)),
                              "ours_correct_theirs_incorrect": sum(a and not b for a, b in zip(ours, theirs,
                                                                                                 strict=True)),
                              "ours_incorrect_theirs_correct": sum(not a and b for a, b in zip(ours, theirs,
                                                                                                 strict=True))}}

    scored = [i for i, (r, v) in enumerate(zip(rows, verdicts, strict=True))
              if v.verdict != "refusal" and not r.label_refusal]
    tasks = sorted({r.task for r in rows})
    out: dict[str, Any] = {"overall": block(scored, "all"), "per_task": {}, "halves": {}}
    for task in tasks:
        out["per_task"][task] = block([i for i in scored if rows[i].task == task], f"all/{task}")
    for half in HALVES:
        part = [i for i in scored if rows[i].half == half]
        out["halves"][half] = {"overall": block(part, half), "per_task": {
            task: block([i for i in part if rows[i].task == task], f"{half}/{task}") for task in tasks}}
    flagged = [i for i, r in enumerate(rows) if r.label_refusal is not None]
    out["refusals"] = {
        "rows_with_author_flag": len(flagged),
        "both": sum(1 for i in flagged if rows[i].label_refusal and verdicts[i].verdict == "refusal"),
        "authors_only": sum(1 for i in flagged if rows[i].label_refusal and verdicts[i].verdict != "refusal"),
        "ours_only": sum(1 for i in flagged if not rows[i].label_refusal and verdicts[i].verdict == "refusal"),
        "ours_total": sum(1 for v in verdicts if v.verdict == "refusal"),
    }
    return out


def validate(shared: Path | None = None, judge: Judge | None = None) -> dict[str, Any]:
    rows, unjoined = load_labelled(shared)
    report: dict[str, Any] = {"rows": len(rows), "unjoined": unjoined, "scorers": {}}
    matcher = [matcher_verdict(r.item, r.output) for r in rows]
    report["scorers"]["matcher"] = agreement(rows, matcher)
    # where the matcher and the authors disagree, by file and row (the shared data is referenced, never copied)
    disagreements = [{"file": r.file, "row": r.row, "task": r.task, "half": r.half,
                      "label": "CORRECT" if r.label_correct else "INCORRECT", "ours": v.verdict,
                      "rule": v.reason.split(":")[0].split(";")[-1].strip()}
                     for r, v in zip(rows, matcher, strict=True)
                     if v.verdict != "refusal" and not r.label_refusal and (v.verdict == "correct") != r.label_correct]
    report["matcher_disagreements"] = disagreements
    if judge is not None:
        verdicts = judge.verdicts([(r.item, r.output) for r in rows])
        report["scorers"][f"judge {judge.name}"] = agreement(rows, verdicts)
    return report


def to_markdown(report: dict[str, Any]) -> str:
    lines = ["# Scorer validation against the authors' GPT-4o labels", "",
             f"Labelled rows: {report['rows']} (unjoined: {report['unjoined']}), from "
             "../shared/data/warm_ai_2025/sample_data (2 models x original/warm x 4 tasks).",
             "Agreement and Cohen's kappa on rows that neither side calls a refusal. Halves: the items split once by a "
             f"seeded hash of their id ({SPLIT_SEED!r}; per task, alternate hash ranks); the matcher's rules were "
             "developed on the dev half only, the held-out half checks them. Kappa intervals: 95% percentile, "
             f"bootstrap over items ({BOOTSTRAP} resamples, seeded).", ""]
    for name, res in report["scorers"].items():
        lines += [f"## {name}", "", "| task | rows | n | agreement | agreement 95% CI | kappa | kappa 95% CI |",
                  "|---|---|---|---|---|---|---|"]
        blocks = [("all", "all", res["overall"]), *[("all", h, res["halves"][h]["overall"]) for h in HALVES]]
        for task in res["per_task"]:
            blocks += [(task, "all", res["per_task"][task]),
                       *[(task, h, res["halves"][h]["per_task"][task]) for h in HALVES]]
        for task, half, b in blocks:
            lo, hi = b["agreement_ci"]
            k_lo, k_hi = b["kappa_ci"]
            lines.append(f"| {task} | {half} | {b['n']} | {b['agreement']:.3f} | {lo:.3f}-{hi:.3f} | "
                         f"{b['kappa']:.3f} | {k_lo:.3f}-{k_hi:.3f} |")
        r = res["refusals"]
        lines += ["", f"Refusals: {r['ours_total']} flagged by us; of {r['rows_with_author_flag']} rows with the "
                      f"authors' flag, both {r['both']}, authors only {r['authors_only']}, ours only "
                      f"{r['ours_only']}.", ""]
    return "\n".join(lines) + "\n"


def matcher_agreement(path: Path, scorer: str = "matcher") -> dict[str, dict[str, Any]]:
    """Per task, one scorer's agreement with the authors' labels from a written `validate-judge.json`: held-out and
    all-rows kappa with their intervals, and whether the held-out kappa reaches KAPPA_TARGET (the held-out half is the
    honest estimate: the rules never saw it)."""
    try:
        report = json.loads(Path(path).read_text())
        res = report["scorers"][scorer]
        held = res["halves"]["held-out"]["per_task"]
        return {task: {"n_held_out": held[task]["n"], "kappa_held_out": held[task]["kappa"],
                       "kappa_held_out_ci": held[task]["kappa_ci"], "n_all": b["n"], "kappa_all": b["kappa"],
                       "kappa_all_ci": b["kappa_ci"], "meets_target": held[task]["kappa"] >= KAPPA_TARGET}
                for task, b in res["per_task"].items() if task in held}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a validate-judge.json with scorer {scorer!r} ({exc})") from exc


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    j = out_dir / "validate-judge.json"
    m = out_dir / "validate-judge.md"
    j.write_text(json.dumps(report, indent=2, default=float) + "\n")
    m.write_text(to_markdown(report))
    return j, m
