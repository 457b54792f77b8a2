"""API keys: the single `--api-key` and a keys file (`--api-keys-file`), each key with an id and optional per-key
limits of requests and tokens per minute, reloadable without a restart (SIGHUP).

The keys file, one key a line (blank lines, lines starting with `#` and ` #...` after the fields are comments):

    # id        key                                   limits (optional)
    alice       sk-3f9c0e5d1a...                      rpm=60 tpm=20000
    ci-bot      sk-77aa01b2c4...

- id: 1-64 of ``A-Z a-z 0-9 _ . -``; it names the key in logs and in `/metrics` (`key="alice"`). Unique.
- key: 16-256 printable characters without spaces. Unique.
- rpm=N: admitted requests in any 60 s; tpm=N: prompt + completion tokens in any 60 s (N a positive integer).

Invariants:
- A key never leaves this module: nothing logs it; a file error names the file, the line number and what is wrong,
  never a field's value (a key written in the wrong field must not reach a log).
- Keys are compared in constant time (`hmac.compare_digest`) against every configured key, whatever matches.
- A file that does not parse is refused whole, naming the line (`KeysFileError`): at start-up the server does not
  start, at reload the old keys stay in force.
- Limits are sliding windows of 60 s: a request is admitted when fewer than rpm requests were admitted in the last
  60 s and fewer than tpm tokens were charged in the last 60 s; tokens are charged when the request ends (completed:
  its usage; cancelled, failed or cut: what it used, see `server.Bridge`). A refusal says how many seconds until the
  window would admit it (`Retry-After`).
- A reload keeps each id's window (rotating alice's key does not reset her usage); requests in flight keep the
  `KeyState` they were admitted with, so a removed key's running requests finish and are charged to it.
"""

from __future__ import annotations

import hmac
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

WINDOW = 60.0  # seconds: both limits are per minute
SINGLE_KEY_ID = "default"  # the id of --api-key / STEERWARM_API_KEY
_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_KEY = re.compile(r"[!-~]{16,256}")  # printable ASCII, no space
_LIMITS = ("rpm", "tpm")


class KeysFileError(ValueError):
    """The keys file is unreadable or malformed; the message names the file and line."""


@dataclass(frozen=True)
class KeySpec:
    id: str
    key: str = field(repr=False)
    rpm: int | None = None
    tpm: int | None = None


def parse_keys(text: str, source: str = "keys file") -> list[KeySpec]:
    """The keys of a keys file's text; `KeysFileError` naming `source:line` on the first bad line."""
    specs: list[KeySpec] = []
    ids: dict[str, int] = {}
    keys: dict[str, int] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = re.split(r"\s#", raw.strip(), maxsplit=1)[0]  # a comment: a line or a field that starts with #
        if not line or line.startswith("#"):
            continue

        def bad(why: str, n: int = n) -> KeysFileError:
            return KeysFileError(f"{source}:{n}: {why}; each line is 'ID KEY [rpm=N] [tpm=N]'")

        fields = line.split()
        if len(fields) < 2:
            raise bad("expected an id and a key")
        kid, key, *opts = fields
        if not _ID.fullmatch(kid):
            raise bad("the id (first field) must be 1-64 of A-Z a-z 0-9 _ . -")
        if not _KEY.fullmatch(key):
            raise bad("the key (second field) must be 16-256 printable characters without spaces")
        if kid in ids:
            raise bad(f"the id is already used on line {ids[kid]}")
        if key in keys:
            raise bad(f"the key is the same as on line {keys[key]}")
        limits: dict[str, int] = {}
        for opt in opts:
            name, eq, value = opt.partition("=")
            if name not in _LIMITS or not eq:
                raise bad("unknown field after the key (limits are rpm=N and tpm=N)")
            if name in limits:
                raise bad(f"{name} is given twice")
            if not value.isdigit() or int(value) < 1:
                raise bad(f"{name} must be a positive integer")
            limits[name] = int(value)
        ids[kid], keys[key] = n, n
        specs.append(KeySpec(kid, key, limits.get("rpm"), limits.get("tpm")))
    return specs


def read_keys_file(path: Path, single_key: str | None = None) -> list[KeySpec]:
    """The file's keys, plus `single_key` (id "default", no limits) when given; refuses an empty file and a file
    that reuses the single key or its id."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeysFileError(f"cannot read the keys file {path}: {exc}") from None
    specs = parse_keys(text, str(path))
    if not specs:
        raise KeysFileError(f"{path}: no keys (each line is 'ID KEY [rpm=N] [tpm=N]'); to revoke every key, stop "
                            "the server")
    if single_key is not None:
        for s in specs:
            if s.id == SINGLE_KEY_ID:
                raise KeysFileError(f"{path}: the id {SINGLE_KEY_ID!r} is reserved for --api-key / "
                                    "STEERWARM_API_KEY; rename it")
            if hmac.compare_digest(s.key.encode(), single_key.encode()):
                raise KeysFileError(f"{path}: the key of id {s.id!r} is the same as --api-key / STEERWARM_API_KEY")
    return specs


@dataclass
class _Window:
    """A key id's sliding window: admission times, (time, tokens) charges, their token sum; guarded by `lock`."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    admitted: deque[float] = field(default_factory=deque)
    charges: deque[tuple[float, int]] = field(default_factory=deque)
    tokens: int = 0  # sum of charges


class KeyState:
    """One key id's limits and sliding window (shared by its requests; thread-safe)."""

    def __init__(self, spec: KeySpec, clock: Callable[[], float] = time.monotonic) -> None:
        self.id = spec.id
        self.rpm, self.tpm = spec.rpm, spec.tpm
        self._clock = clock
        self._w = _Window()

    def _expire(self, now: float) -> None:
        w = self._w
        while w.admitted and w.admitted[0] <= now - WINDOW:
            w.admitted.popleft()
        while w.charges and w.charges[0][0] <= now - WINDOW:
            w.tokens -= w.charges.popleft()[1]

    def admit(self) -> tuple[str, float] | None:
        """Admit one request (counted in the window), or refuse it: (which limit, seconds until it would pass)."""
        w = self._w
        with w.lock:
            now = self._clock()
            self._expire(now)
            if self.rpm is not None and len(w.admitted) >= self.rpm:
                return "rpm", w.admitted[len(w.admitted) - self.rpm] + WINDOW - now
            if self.tpm is not None and w.tokens >= self.tpm:
                left = w.tokens
                for t, n in w.charges:  # the oldest charges expire first
                    left -= n
                    if left < self.tpm:
                        return "tpm", t + WINDOW - now
            w.admitted.append(now)
            return None

    def charge(self, tokens: int) -> None:
        if tokens <= 0:
            return
        w = self._w
        with w.lock:
            w.charges.append((self._clock(), tokens))
            w.tokens += tokens

    def adopt(self, old: KeyState) -> None:
        """Share `old`'s window (the same id across a reload): a request admitted under `old` and charged after the
        reload is counted in this one too."""
        self._w = old._w

    def usage(self) -> tuple[int, int]:
        """(requests admitted, tokens charged) in the current window."""
        w = self._w
        with w.lock:
            self._expire(self._clock())
            return len(w.admitted), w.tokens


def retry_after(seconds: float) -> int:
    """A `Retry-After` value: whole seconds, at least 1."""
    return max(1, math.ceil(seconds))


class KeyRing:
    """The keys in force: the single key and/or a keys file. `match` finds the state of a presented key."""

    def __init__(self, single_key: str | None = None, path: Path | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.single_key = single_key or None
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: list[tuple[bytes, KeyState]] = []
        self._install(read_keys_file(path, self.single_key) if path is not None else [])

    @property
    def enabled(self) -> bool:
        with self._lock:
            return bool(self._keys)

    @property
    def ids(self) -> list[str]:
        with self._lock:
            return [s.id for _, s in self._keys]

    def _install(self, specs: Sequence[KeySpec]) -> None:
        everything = [KeySpec(SINGLE_KEY_ID, self.single_key)] if self.single_key else []
        everything += list(specs)
        with self._lock:
            old = {s.id: s for _, s in self._keys}
            keys = []
            for spec in everything:
                state = KeyState(spec, self._clock)
                if spec.id in old:
                    state.adopt(old[spec.id])
                keys.append((spec.key.encode(), state))
            self._keys = keys

    def reload(self) -> list[str]:
        """Re-read the keys file; the ids now in force. `KeysFileError` (old keys kept) when it does not parse."""
        if self.path is None:
            raise KeysFileError("no keys file to reload (start the server with --api-keys-file)")
        self._install(read_keys_file(self.path, self.single_key))
        return self.ids

    def match(self, token: str) -> KeyState | None:
        with self._lock:
            keys = self._keys
        presented = token.encode()
        found = None
        for key, state in keys:  # every key compared, whichever matches
            if hmac.compare_digest(presented, key):
                found = state
        return found


# The key of the request being handled (set by `Server.check_auth`): the token limits charge it, and /metrics counts
# the request under its id. Each request runs in its own task, so it never leaks between requests.
current_key: ContextVar[KeyState | None] = ContextVar("steerwarm_current_key", default=None)
