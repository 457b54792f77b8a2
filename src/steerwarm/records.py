"""One policy for resumable files: append-only JSONL logs, files put into place atomically, and a run folder's
settings lock.

Every long job that resumes (bench runs, sweeps, answer caches, `meter compare`, corpus rewrites, activation shards,
training) keeps its finished work through this module, so a kill at any instant has one meaning everywhere.

Invariants:
- A log line is one JSON object and its newline. `RecordLog.extend` writes a batch's lines in one write and flushes
  them; `checkpoint()` (called by `extend(..., sync=True)` and by `close()`) also fsyncs, so everything written
  before a checkpoint survives a crash of the machine, not only of the process.
- Reading tolerates exactly one kind of damage, the one a kill mid-write leaves: a torn LAST line (bytes after the
  last newline that are not a complete JSON object, or a last line that is not one). It is dropped, and cut off the
  file before anything is appended again, so its record is simply redone. A complete JSON object lacking only its
  newline is kept (the newline is added before appending).
- Damage before the end (an unreadable line followed by readable ones) cannot come from a kill: it raises
  `DamagedLogError` naming the file and the 1-based line, and nothing is guessed away. Blank lines are skipped.
- `commit_file(tmp, final)` fsyncs a finished temporary file and renames it into place: a file that exists under
  its final name is complete; a kill leaves at most a stray temporary file.
- A settings lock is a JSON object written atomically (temporary file, fsync, os.replace). The first run writes it;
  a rerun compares the result-defining keys and, if any differ, refuses with `SettingsMismatchError` listing every
  differing key with both values. Keys that may change between sessions (progress flags, batch size, more tasks)
  are not compared and are refreshed from the new run; a key the stored lock lacks (older folders) is accepted.
- Fault injection for tests: with `STEERWARM_KILL_AFTER_RECORDS=N` the process SIGKILLs itself while writing its
  N-th record (log line or committed file) of the process: half of the line is written and flushed (a committed
  file stays under its temporary name), so the resume path meets a real torn write, not a simulated one.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from types import TracebackType
from typing import Any

KILL_ENV = "STEERWARM_KILL_AFTER_RECORDS"
_MISSING = "<missing>"
_records_written = 0  # records written by this process, for the kill hook


class DamagedLogError(ValueError):
    """A JSONL log is damaged before its last line; `str(err)` reads `path:line: what is wrong; what to do`."""

    def __init__(self, path: str | Path, line: int, reason: str) -> None:
        self.path = Path(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{self.path}:{line}: {reason}; a kill only ever tears the last line, so this file was "
                         "damaged otherwise: fix or remove that line, then rerun")


@dataclass(frozen=True)
class Difference:
    """One result-defining setting that differs between the stored lock and the new run; `at` is the dotted path
    inside a nested value ("" when the value itself differs)."""

    key: str
    old: Any
    new: Any
    at: str = ""

    def describe(self, what: str) -> str:
        inside = f" (at {self.at!r})" if self.at else ""
        return f"field {self.key!r}{inside} was {self.old!r} in this {what}, now {self.new!r}"


class SettingsMismatchError(ValueError):
    """A folder was made with other result-defining settings than the ones asked for now."""

    def __init__(self, path: str | Path, differences: list[Difference], *, what: str = "run folder",
                 hint: str = "resume with the same settings or use a new --out folder") -> None:
        self.path = Path(path)
        self.differences = differences
        fields = "; ".join(d.describe(what) for d in differences)
        super().__init__(f"{self.path}: {fields}; {hint}")


# -- the kill hook ----------------------------------------------------------------------------------------------------
def _kill_at() -> int | None:
    value = os.environ.get(KILL_ENV)
    return int(value) if value else None


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


# -- reading ----------------------------------------------------------------------------------------------------------
def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


@dataclass
class _Scan:
    records: list[tuple[int, dict[str, Any]]]
    keep: int  # bytes of the file to keep (the torn last line cut off)
    add_newline: bool  # the last line is complete but lacks its newline
    size: int


def _scan(path: Path) -> _Scan:
    data = path.read_bytes() if path.is_file() else b""
    lines = data.split(b"\n")  # the last element is what follows the last newline ("" when the file ends with one)
    starts = [0, *accumulate(len(raw) + 1 for raw in lines)]
    filled = [i for i, raw in enumerate(lines) if raw.strip()]
    records: list[tuple[int, dict[str, Any]]] = []
    keep, add_newline = len(data), False
    for i in filled:
        rec = _parse(lines[i])
        if rec is None:
            if i != filled[-1]:
                raise DamagedLogError(path, i + 1, "not a JSON object")
            keep = starts[i]  # the torn last line: dropped, and cut off before the next append
        else:
            records.append((i + 1, rec))
            add_newline = i == len(lines) - 1
    return _Scan(records, keep, add_newline and keep == len(data), len(data))


def read_numbered(path: str | Path, *, repair: bool = False) -> list[tuple[int, dict[str, Any]]]:
    """(1-based line, record) for every record of a JSONL log, in file order; a torn last line is dropped, and with
    `repair` cut off the file. Damage before the end raises `DamagedLogError`. A missing file holds nothing."""
    path = Path(path)
    scan = _scan(path)
    if repair:
        _repair(path, scan)
    return scan.records


def read_records(path: str | Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """The records of a JSONL log in file order (see `read_numbered`)."""
    return [rec for _, rec in read_numbered(path, repair=repair)]


def _repair(path: Path, scan: _Scan) -> None:
    if scan.keep < scan.size:
        with path.open("r+b") as fh:
            fh.truncate(scan.keep)
            fh.flush()
            os.fsync(fh.fileno())
    elif scan.add_newline:
        with path.open("ab") as fh:
            fh.write(b"\n")


# -- writing ----------------------------------------------------------------------------------------------------------
class RecordLog:
    """An append-only JSONL log. The first write repairs the file (a torn last line cut off), then appends; use it as
    a context manager, or call `close()`, so the last records are fsync'ed."""

    def __init__(self, path: str | Path, *, default: Callable[[Any], Any] | None = None,
                 ensure_ascii: bool = False) -> None:
        self.path = Path(path)
        self._default = default
        self._ensure_ascii = ensure_ascii
        self._fh: Any = None

    def read(self, *, repair: bool = True) -> list[dict[str, Any]]:
        """The log's records (see `read_records`); by default the torn last line is cut off at once."""
        return read_records(self.path, repair=repair)

    def append(self, record: dict[str, Any], *, sync: bool = False) -> None:
        self.extend([record], sync=sync)

    def extend(self, records: Iterable[dict[str, Any]], *, sync: bool = False) -> int:
        """Append records as one batch, flushed (and with `sync` fsync'ed); returns how many were written."""
        global _records_written
        lines = [json.dumps(r, ensure_ascii=self._ensure_ascii, default=self._default) + "\n" for r in records]
        if not lines:
            return 0
        fh = self._file()
        kill_at = _kill_at()
        if kill_at is not None and _records_written < kill_at <= _records_written + len(lines):
            i = kill_at - _records_written - 1
            fh.write("".join(lines[:i]) + lines[i][: max(1, len(lines[i]) // 2)])
            fh.flush()
            os.fsync(fh.fileno())
            _die()
        fh.write("".join(lines))
        fh.flush()
        _records_written += len(lines)
        if sync:
            os.fsync(fh.fileno())
        return len(lines)

    def checkpoint(self) -> None:
        """fsync what was appended so far."""
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self.checkpoint()
            self._fh.close()
            self._fh = None

    def open(self) -> RecordLog:
        """Repair and open the file now (creating it, even if nothing is appended); appends open it lazily."""
        self._file()
        return self

    def _file(self) -> Any:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _repair(self.path, _scan(self.path))
            self._fh = self.path.open("a", encoding="utf-8")
        return self._fh

    def __enter__(self) -> RecordLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def append_records(path: str | Path, records: Iterable[dict[str, Any]], **kw: Any) -> int:
    """Append one batch to a log (repairing it first), flushed and fsync'ed; returns how many were written."""
    with RecordLog(path, **kw) as log:
        return log.extend(records, sync=True)


def rewrite_records(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Replace a log's whole content atomically (for the rare edit that is not an append)."""
    path = Path(path)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    write_atomic(path, text)


def commit_file(tmp: str | Path, final: str | Path) -> None:
    """fsync a finished temporary file and rename it to `final`: a file under its final name is always complete.
    Counts as one record for the kill hook (a kill there leaves the temporary file, never a partial final one)."""
    global _records_written
    kill_at = _kill_at()
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    if kill_at is not None and _records_written + 1 == kill_at:
        _die()
    os.replace(tmp, final)
    _records_written += 1


def write_atomic(path: str | Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder, fsync'ed, then os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json(path: str | Path, data: Any, *, default: Callable[[Any], Any] | None = str) -> None:
    """A JSON document (indented, newline-terminated) written atomically."""
    write_atomic(path, json.dumps(data, indent=2, default=default) + "\n")


# -- the settings lock ------------------------------------------------------------------------------------------------
def differences(old: dict[str, Any], new: dict[str, Any], keys: Collection[str] | None = None,
                comparable: Callable[[str, Any], Any] | None = None) -> list[Difference]:
    """Settings that differ. With `keys`, only those keys the old settings hold are compared (a key an older lock
    lacks is accepted); without, every key of either side. `comparable(key, value)` keeps the part of a value that
    defines results (e.g. a file's hash, not its path). Nested dicts are compared key by key (`Difference.at`)."""
    out: list[Difference] = []
    names = [k for k in keys if k in old] if keys is not None else sorted({*old, *new})

    def walk(key: str, at: str, a: Any, b: Any) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted({*a, *b}, key=str):
                walk(key, f"{at}.{k}" if at else str(k), a.get(k, _MISSING), b.get(k, _MISSING))
        elif a != b:
            out.append(Difference(key, a, b, at))

    for key in names:
        a, b = old.get(key, _MISSING), new.get(key, _MISSING)
        if comparable is not None:
            a, b = comparable(key, a), comparable(key, b)
        walk(key, "", a, b)
    return out


@dataclass
class SettingsLock:
    """A run folder's settings lock: a JSON object at `path` whose `field` (or, with field None, the whole object)
    holds the settings. Other fields of the document (sessions, points) belong to the caller."""

    path: Path
    keys: Collection[str] | None = None
    comparable: Callable[[str, Any], Any] | None = None
    field: str | None = "config"
    what: str = "run folder"
    hint: str = "resume with the same settings or use a new --out folder"

    def read(self) -> dict[str, Any] | None:
        """The stored document, or None when there is none; an unreadable one raises `DamagedLogError`."""
        if not self.path.is_file():
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DamagedLogError(self.path, exc.lineno, f"invalid JSON ({exc.msg})") from exc
        if not isinstance(data, dict) or (self.field is not None and not isinstance(data.get(self.field), dict)):
            where = f"field {self.field!r} missing" if self.field else "not a JSON object"
            raise DamagedLogError(self.path, 1, f"{where}; not a steerwarm {self.what}?")
        return data

    def settings(self, doc: dict[str, Any]) -> dict[str, Any]:
        stored: dict[str, Any] = doc[self.field] if self.field is not None else doc
        return stored

    def check(self, settings: dict[str, Any]) -> dict[str, Any] | None:
        """The stored document after checking `settings` against it (None on a first run); a result-defining
        difference raises `SettingsMismatchError` listing every differing key."""
        doc = self.read()
        if doc is not None:
            diffs = differences(self.settings(doc), settings, self.keys, self.comparable)
            if diffs:
                raise SettingsMismatchError(self.path, diffs, what=self.what, hint=self.hint)
        return doc

    def open(self, settings: dict[str, Any], **fields: Any) -> dict[str, Any]:
        """Check, then store: on a first run `settings` as they are; on a rerun the stored result-defining values are
        kept and every other key is refreshed from `settings`. `fields` are the document's other fields where it
        lacks them (e.g. `sessions=[]`). Returns the document now on disk."""
        doc = self.check(settings)
        if doc is None:
            doc = {self.field: settings} if self.field is not None else dict(settings)
        else:
            old = self.settings(doc)
            keep = set(self.keys) if self.keys is not None else set(old)
            merged = {**old, **{k: v for k, v in settings.items() if k not in keep or k not in old}}
            if self.field is not None:
                doc[self.field] = merged
            else:
                doc = merged
        doc.update((k, v) for k, v in fields.items() if k not in doc)
        self.write(doc)
        return doc

    def write(self, doc: dict[str, Any]) -> None:
        write_json(self.path, doc)
