"""A run folder: results.jsonl (one line per finished prompt), run.json (configuration and sessions), summary.json.

Invariants:
- results.jsonl is an append-only `records.RecordLog`: each batch's lines are written, flushed and fsync'ed before
  the next batch starts, so a crash or kill loses at most the batch in flight.
- Reading follows the records policy: a torn last line (a kill mid-write) is dropped and cut off before anything
  new is appended, so its prompt is scored again and the file stays valid JSON Lines; damage anywhere else raises
  (`records.DamagedLogError`, or `DataFileError` for a line that is not a result record), naming the line.
- Records are keyed by `prompt_id`; a key is never written twice by the runner, and if a file holds duplicates
  (hand-merged runs) the first record wins, so a resumed run neither loses nor duplicates a prompt.
- run.json is the run folder's `records.SettingsLock`: `config` is written on the first session; a rerun with a
  different result-defining configuration is refused, naming every differing field.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from steerwarm.bench.errors import DataFileError
from steerwarm.records import RecordLog, SettingsLock, read_numbered, write_json

RESULTS = "results.jsonl"
RUN_JSON = "run.json"
SUMMARY = "summary.json"



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
        for lineno, rec in read_numbered(self.results, repair=repair):
            if not isinstance(rec.get("prompt_id"), str):
                raise DataFileError(self.results, lineno, "prompt_id", "missing; not a result record")
            out.setdefault(rec["prompt_id"], rec)
        return out

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        with RecordLog(self.results, default=float) as log:
            return log.extend(records, sync=True)

    # -- configuration --------------------------------------------------------------------------------------------
    def lock(self, keys: Iterable[str] = ()) -> SettingsLock:
        return SettingsLock(self.run_json, keys=tuple(keys), what="run folder")

    def read_run(self) -> dict[str, Any] | None:
        return self.lock().read()

    def write_run(self, data: dict[str, Any]) -> None:
        write_json(self.run_json, data)

    def open_run(self, config: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
        """run.json for this configuration: created, or checked against the stored one on the `keys` that define
        results (a mismatch raises `SettingsMismatchError` naming the fields); other fields (more tasks, a larger
        limit) are refreshed."""
        return self.lock(keys).open(config, sessions=[])

    def write_summary(self, summary: dict[str, Any]) -> Path:
        write_json(self.summary, summary, default=float)
        return self.summary
