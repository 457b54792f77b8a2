"""A run folder: results.jsonl (one line per finished prompt), run.json (configuration and sessions), summary.json.

Invariants:
- results.jsonl is append-only; each batch's lines are written, flushed and fsync'ed before the next batch starts,
  so a crash or kill loses at most the batch in flight.
- Reading tolerates exactly one kind of damage, a torn last line (a kill mid-write): it is cut off before anything
  new is appended, so the file stays valid JSON Lines. Damage anywhere else raises `DataFileError` with the line.
- Records are keyed by `prompt_id`; a key is never written twice by the runner, and if a file holds duplicates
  (hand-merged runs) the first record wins, so a resumed run neither loses nor duplicates a prompt.
- run.json's `config` is written once; a rerun with a different result-defining configuration is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from steerwarm.bench.errors import DataFileError

RESULTS = "results.jsonl"
RUN_JSON = "run.json"
SUMMARY = "summary.json"


class ConfigMismatchError(ValueError):
    """A run folder was made with another configuration than the one asked for now."""


class RunStore:
    def __init__(self, run_dir: str | Path) -> None:
        self.dir = Path(run_dir)
        self.results = self.dir / RESULTS
        self.run_json = self.dir / RUN_JSON
        self.summary = self.dir / SUMMARY

    # -- results ----------------------------------------------------------------------------------------------------
    def load(self, *, repair: bool = False) -> dict[str, dict[str, Any]]:
        """Records by prompt id. Bytes after the last newline are a torn write: ignored, and with `repair` cut off."""
        out: dict[str, dict[str, Any]] = {}
        if not self.results.is_file():
            return out
        data = self.results.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        for lineno, raw in enumerate(complete.split(b"\n")[:-1], start=1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise DataFileError(self.results, lineno, None, f"unreadable result line: {exc}") from exc
            if not isinstance(rec, dict) or not isinstance(rec.get("prompt_id"), str):
                raise DataFileError(self.results, lineno, "prompt_id", "missing; not a result record")
            out.setdefault(rec["prompt_id"], rec)
        if repair and len(complete) < len(data):
            with self.results.open("r+b") as fh:
                fh.truncate(len(complete))
        return out

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        lines = [json.dumps(r, ensure_ascii=False, default=float) + "\n" for r in records]
        if not lines:
            return 0
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.results.open("a", encoding="utf-8") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())
        return len(lines)

    # -- configuration --------------------------------------------------------------------------------------------
    def read_run(self) -> dict[str, Any] | None:
        if not self.run_json.is_file():
            return None
        try:
            data = json.loads(self.run_json.read_text())
        except json.JSONDecodeError as exc:
            raise DataFileError(self.run_json, exc.lineno, None, f"invalid JSON: {exc.msg}") from exc
        if not isinstance(data, dict) or "config" not in data:
            raise DataFileError(self.run_json, 1, "config", "missing; not a steerwarm bench run folder?")
        return data

    def write_run(self, data: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.run_json.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
        tmp.replace(self.run_json)

    def open_run(self, config: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
        """run.json for this configuration: created, or checked against the stored one on the `keys` that define
        results (a mismatch raises `ConfigMismatchError` naming the field)."""
        existing = self.read_run()
        if existing is None:
            data = {"config": config, "sessions": []}
            self.write_run(data)
            return data
        old = existing["config"]
        for key in keys:
            if key in old and old.get(key) != config.get(key):
                raise ConfigMismatchError(
                    f"{self.run_json}: field {key!r} was {old.get(key)!r} in this run folder, now "
                    f"{config.get(key)!r}; resume with the same settings or use a new --out folder")
        # fields that may grow between sessions (more tasks, a larger limit) are refreshed
        existing["config"] = {**old, **{k: v for k, v in config.items() if k not in keys}}
        self.write_run(existing)
        return existing

    def write_summary(self, summary: dict[str, Any]) -> Path:
        tmp = self.summary.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=2, default=float) + "\n")
        tmp.replace(self.summary)
        return self.summary
