"""Seeded choices that depend only on names, never on call order.

Invariant: `stable_int(*parts)` is a pure function of its parts (SHA-256 of their joined text), identical across
processes, platforms and Python versions (unlike `hash()`), so a statement, a distractor or a sample picked with it is
the same for every target and every rerun.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def stable_int(*parts: object) -> int:
    """A 64-bit integer determined by the parts' text."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def stable_choice(options: Sequence[T], *parts: object) -> T:
    if not options:
        raise ValueError("cannot choose from an empty sequence")
    return options[stable_int(*parts) % len(options)]


def stable_sample(keys: Sequence[str], k: int, *parts: object) -> list[str]:
    """`k` of `keys` chosen by ranking each key's own hash: adding keys never reshuffles the others' ranks."""
    ranked = sorted(keys, key=lambda key: (stable_int(*parts, key), key))
    return ranked[:k]


def short_hash(text: str, n: int = 12) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]
