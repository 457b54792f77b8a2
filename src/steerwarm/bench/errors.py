"""Errors about benchmark input files, always naming the file, the line and the field at fault.

Invariant: every problem found in an item, context or results file is raised as `DataFileError`, whose message
starts with `path:line:` (line 0 when the whole file is at fault) and names the field, so the user can fix it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class DataFileError(ValueError):
    """A benchmark input file is malformed; `str(err)` reads `path:line: field 'name': what is wrong`."""

    def __init__(self, path: str | Path, line: int, field: str | None, message: str) -> None:
        self.path = Path(path)
        self.line = line
        self.field = field
        where = f"{self.path}:{line}:"
        what = f" field {field!r}:" if field else ""
        super().__init__(f"{where}{what} {message}")


def read_json(path: Path, kind: type, wrong_kind: str) -> tuple[Any, str]:
    """(parsed JSON, its text) of a whole-file JSON input that must be a `kind`; bad JSON names its line."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFileError(path, exc.lineno, None, f"invalid JSON: {exc.msg}") from exc
    if not isinstance(data, kind):
        raise DataFileError(path, 1, None, wrong_kind)
    return data, text
