"""Errors about benchmark input files, always naming the file, the line and the field at fault.

Invariant: every problem found in an item, context or results file is raised as `DataFileError`, whose message
starts with `path:line:` (line 0 when the whole file is at fault) and names the field, so the user can fix it.
"""

from __future__ import annotations

from pathlib import Path


class DataFileError(ValueError):
    """A benchmark input file is malformed; `str(err)` reads `path:line: field 'name': what is wrong`."""

    def __init__(self, path: str | Path, line: int, field: str | None, message: str) -> None:
        self.path = Path(path)
        self.line = line
        self.field = field
        where = f"{self.path}:{line}:"
        what = f" field {field!r}:" if field else ""
        super().__init__(f"{where}{what} {message}")
