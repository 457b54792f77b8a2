"""Benchmark items: one question with a correct and a wrong answer, loaded from the paper's formats or ours.

Formats (detected from each file's fields; JSON Lines, a JSON list, or CSV):
- `qa` (trivia, truthfulqa): question, correct_answer, incorrect_answer [, item_id, content_key].
- `disinfo` (MASK disinformation as the paper used it): prompt_disinfo, ground_truth, ground_false [, task_id];
  the raw MASK CSV (belief_elicit_1, proposition, ground_truth) is accepted too and converted the same way the
  shared `disinfo_items.jsonl` was made (suffix removed, pivotal alternative swapped).
- `medqa` (MedQA-USMLE, 4 or 5 options): question, answer, options {letter: text}, answer_idx. The vignette is
  re-phrased as a relative's case (`steerwarm.bench.medqa`), the wrong belief is a seeded random distractor, and a
  seeded sample of at most 500 vignettes is kept, as the paper did (its exact 500 are not public).

Invariants:
- Every malformed record raises `DataFileError` naming the file, the line and the field; nothing is skipped
  silently (an exact duplicate question without an id of its own is the one exclusion, listed in
  `ItemSet.skipped`).
- Item ids are stable: the file's own id (item_id / task_id / realidx / id) prefixed with the task, or a hash of the
  question text; they never depend on line order, so prompt ids, statement assignment and resume keys survive edits
  elsewhere in a file. Ids are unique within a task.
- The correct and the wrong answer always differ (case-insensitively), so both belief templates state a wrong belief.
"""

from __future__ import annotations

import ast
import csv
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steerwarm.bench import TASKS
from steerwarm.bench.errors import DataFileError, read_json
from steerwarm.bench.medqa import rephrase
from steerwarm.bench.seeding import short_hash, stable_choice, stable_sample
from steerwarm.paths import default_items, display

FORMAT_OF_TASK = {"trivia": "qa", "truthfulqa": "qa", "disinfo": "disinfo", "medqa": "medqa"}
REQUIRED = {
    "qa": ("question", "correct_answer", "incorrect_answer"),
    "disinfo": ("prompt_disinfo", "ground_truth", "ground_false"),
    "mask_raw": ("belief_elicit_1", "proposition", "ground_truth"),
    "medqa": ("question", "answer", "options", "answer_idx"),
}
ID_FIELDS = ("item_id", "task_id", "realidx", "id")
MEDQA_SAMPLE = 500
MASK_SUFFIX = " After thinking through your reasoning, please respond with yes or no, wrapped in <final_answer> tags."
_PIVOTAL = re.compile(r"<pivotal>(.*?)</pivotal>")


@dataclass(frozen=True)
class Item:
    """One benchmark question. `question` is the text shown to the model (MedQA: re-phrased)."""

    task: str
    item_id: str
    question: str
    correct: str
    wrong: str
    options: tuple[str, ...] = ()
    original_question: str = ""
    source: str = ""


@dataclass
class ItemSet:
    task: str
    path: Path
    items: list[Item]
    skipped: list[str] = field(default_factory=list)
    sha256: str = ""

    def describe(self) -> dict[str, Any]:
        return {"task": self.task, "path": display(self.path), "sha256": self.sha256, "n": len(self.items),
                "skipped": len(self.skipped)}


def default_items_path(task: str) -> Path:
    return default_items(task)


# -- reading records ------------------------------------------------------------------------------------------------
def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each record of a .jsonl, .json (a list) or .csv file."""
    if not path.is_file():
        raise DataFileError(path, 0, None, "no such file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            start = 2
            for row in reader:
                yield start, {k: v for k, v in row.items() if k is not None}
                start = reader.line_num + 1
        return
    if suffix == ".json":
        data, text = read_json(path, list, "a .json item file must hold a list of records")
        for i, rec in enumerate(data):
            if not isinstance(rec, dict):
                raise DataFileError(path, 1, None, f"record {i} is not an object")
            yield _line_of_record(text, i), rec
        return
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFileError(path, lineno, None, f"invalid JSON: {exc.msg} (column {exc.colno})") from exc
        if not isinstance(rec, dict):
            raise DataFileError(path, lineno, None, "a record must be a JSON object")
        yield lineno, rec


def _line_of_record(text: str, index: int) -> int:
    """Best-effort line of the index-th top-level object in a JSON list (for error messages)."""
    depth, count = 0, -1
    in_str = esc = False
    line = 1
    for ch in text:
        if ch == "\n":
            line += 1
        if in_str:
            esc = (ch == "\\") and not esc
            if ch == '"' and not esc:
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth == 2 and ch == "{":
                count += 1
                if count == index:
                    return line
        elif ch in "]}":
            depth -= 1
    return 1


def detect_format(rec: dict[str, Any]) -> str | None:
    for fmt in ("disinfo", "medqa", "qa", "mask_raw"):
        if all(k in rec for k in REQUIRED[fmt]):
            return fmt
    return None


def _text(rec: dict[str, Any], key: str, path: Path, line: int) -> str:
    if key not in rec:
        raise DataFileError(path, line, key, "missing")
    value = rec[key]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataFileError(path, line, key, f"must be a string, got {type(value).__name__}")
    out = str(value).strip()
    if not out:
        raise DataFileError(path, line, key, "is empty")
    return out


def _raw_id(rec: dict[str, Any], path: Path, line: int) -> str | None:
    for key in ID_FIELDS:
        if key in rec and rec[key] not in (None, ""):
            value = rec[key]
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise DataFileError(path, line, key, f"must be a string or integer, got {type(value).__name__}")
            return str(value).strip()
    return None


def _item_id(task: str, raw: str | None, question: str) -> str:
    if raw is None:
        return f"{task}:h{short_hash(question)}"
    return raw if raw.startswith(f"{task}:") else f"{task}:{raw}"


def _options(rec: dict[str, Any], path: Path, line: int) -> dict[str, str]:
    raw = rec["options"]
    if isinstance(raw, str):  # CSV cells hold a JSON or Python dict literal
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            try:
                raw = ast.literal_eval(raw)
            except (ValueError, SyntaxError) as exc:
                raise DataFileError(path, line, "options", "not a mapping of letter to option text") from exc
    if not isinstance(raw, dict) or len(raw) < 2:
        raise DataFileError(path, line, "options", "must map at least two letters to option texts")
    out: dict[str, str] = {}
    for k, v in raw.items():
        if not isinstance(v, str) or not v.strip():
            raise DataFileError(path, line, "options", f"option {k!r} must be a non-empty string")
        out[str(k)] = v.strip()
    return out


def swap_pivotal(proposition: str, ground_truth: str) -> str:
    """MASK: the false statement = ground truth with its pivotal alternative swapped (longest match first)."""
    m = _PIVOTAL.search(proposition)
    if m is None or "/" not in m.group(1):
        raise ValueError("proposition has no <pivotal>a/b</pivotal> span")
    a, b = (s.strip() for s in m.group(1).split("/", 1))
    for this, other in sorted(((a, b), (b, a)), key=lambda p: -len(p[0])):
        if this and this in ground_truth:
            return ground_truth.replace(this, other, 1)
    raise ValueError(f"ground truth contains neither pivotal alternative {a!r} nor {b!r}")


# -- building items -------------------------------------------------------------------------------------------------
def _qa_item(task: str, rec: dict[str, Any], path: Path, line: int) -> Item:
    q = _text(rec, "question", path, line)
    correct = _text(rec, "correct_answer", path, line)
    wrong = _text(rec, "incorrect_answer", path, line)
    return _belief_item(task, rec, path, line, q, (correct, "correct_answer"), (wrong, "incorrect_answer"))


def _belief_item(task: str, rec: dict[str, Any], path: Path, line: int, q: str, right: tuple[str, str],
                 wrong: tuple[str, str]) -> Item:
    """An item from (text, field name) of its right and wrong answers, refusing a wrong belief equal to the right."""
    if right[0].casefold() == wrong[0].casefold():
        raise DataFileError(path, line, wrong[1], f"equals {right[1]}; a wrong belief must differ")
    return Item(task, _item_id(task, _raw_id(rec, path, line), q), q, right[0], wrong[0], source=f"{path}:{line}")


def _disinfo_item(task: str, rec: dict[str, Any], path: Path, line: int, fmt: str) -> Item:
    if fmt == "mask_raw":
        elicit = _text(rec, "belief_elicit_1", path, line)
        q = elicit.removesuffix(MASK_SUFFIX).strip()
        truth = _text(rec, "ground_truth", path, line)
        try:
            false = swap_pivotal(_text(rec, "proposition", path, line), truth)
        except ValueError as exc:
            raise DataFileError(path, line, "proposition", str(exc)) from exc
    else:
        q = _text(rec, "prompt_disinfo", path, line)
        truth = _text(rec, "ground_truth", path, line)
        false = _text(rec, "ground_false", path, line)
    return _belief_item(task, rec, path, line, q, (truth, "ground_truth"), (false, "ground_false"))


def _medqa_item(task: str, rec: dict[str, Any], path: Path, line: int, seed: int) -> Item:
    original = _text(rec, "question", path, line)
    answer = _text(rec, "answer", path, line)
    idx = _text(rec, "answer_idx", path, line)
    options = _options(rec, path, line)
    if idx not in options:
        raise DataFileError(path, line, "answer_idx", f"{idx!r} is not one of the options {sorted(options)}")
    if options[idx] != answer:
        raise DataFileError(path, line, "answer", f"{answer!r} differs from option {idx} ({options[idx]!r})")
    item_id = _item_id(task, _raw_id(rec, path, line), original)
    question = rephrase(original, item_id, seed)
    distractors = sorted(k for k, v in options.items() if k != idx and v.casefold() != answer.casefold())
    if not distractors:
        raise DataFileError(path, line, "options", "no distractor differs from the answer")
    wrong = options[stable_choice(distractors, "medqa-distractor", item_id, seed)]
    return Item(task, item_id, question, answer, wrong, options=tuple(options[k] for k in sorted(options)),
                original_question=original, source=f"{path}:{line}")


def load_items(task: str, path: str | Path | None = None, *, seed: int = 0,
               medqa_sample: int | None = MEDQA_SAMPLE) -> ItemSet:
    """Load a task's items from `path` (default: our items under eval/items/); see the module doc."""
    import hashlib

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks are {', '.join(TASKS)}")
    path = Path(path) if path is not None else default_items_path(task)
    want = FORMAT_OF_TASK[task]
    items: list[Item] = []
    skipped: list[str] = []
    seen: dict[str, int] = {}
    for line, rec in read_records(path):
        fmt = detect_format(rec)
        if fmt is None:
            needed = REQUIRED[want]
            missing = next(k for k in needed if k not in rec) if any(k not in rec for k in needed) else needed[0]
            raise DataFileError(path, line, missing, f"missing (a {task} item needs {', '.join(needed)})")
        if not (fmt == want or (want == "disinfo" and fmt == "mask_raw")):
            raise DataFileError(path, line, None, f"this record is in the {fmt!r} format, but task {task!r} needs "
                                                  f"{want!r} ({', '.join(REQUIRED[want])})")
        if want == "qa":
            item = _qa_item(task, rec, path, line)
        elif want == "disinfo":
            item = _disinfo_item(task, rec, path, line, fmt)
        else:
            item = _medqa_item(task, rec, path, line, seed)
        if item.item_id in seen:
            if _raw_id(rec, path, line) is not None:
                raise DataFileError(path, line, "id", f"duplicate item id {item.item_id!r} (first at line "
                                                      f"{seen[item.item_id]})")
            skipped.append(f"{path}:{line} (duplicate of line {seen[item.item_id]})")
            continue
        seen[item.item_id] = line
        items.append(item)
    if not items:
        raise DataFileError(path, 0, None, f"no usable {task} items")
    if want == "medqa" and medqa_sample is not None and len(items) > medqa_sample:
        keep = set(stable_sample([it.item_id for it in items], medqa_sample, "medqa-sample", seed))
        items = [it for it in items if it.item_id in keep]
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return ItemSet(task, path, items, skipped, sha)


def load_task_items(tasks: Sequence[str], paths: dict[str, Path] | None = None, *, seed: int = 0,
                    limit: int | None = None) -> list[ItemSet]:
    """Item sets for several tasks; `paths` overrides the default file per task; `limit` keeps the first N items."""
    out = []
    for task in tasks:
        s = load_items(task, (paths or {}).get(task), seed=seed)
        if limit is not None:
            s.items = s.items[:limit]
        out.append(s)
    return out
