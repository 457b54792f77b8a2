"""Validation prompts: the first user turns of the corpus's validation split, balanced across query types.

Invariant: the order is fixed (round-robin over query types), so any prefix of the list is balanced and every
measurement that takes the first N prompts measures the same prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from steerwarm.corpus.schema import Conversation


@dataclass(frozen=True)
class ValidationPrompt:
    id: str
    query_type: str
    text: str


def balanced_conversations(split: str, limit: int | None = None) -> list[Conversation]:
    """The split's conversations, round-robin over query types (so any prefix is balanced across types)."""
    from steerwarm.corpus.schema import QUERY_TYPES, load_corpus

    by_type: dict[str, list[Conversation]] = {t: [] for t in QUERY_TYPES}
    for c in load_corpus(split):
        by_type[c.query_type].append(c)
    out: list[Conversation] = []
    while any(by_type.values()) and (limit is None or len(out) < limit):
        for t in QUERY_TYPES:
            if by_type[t] and (limit is None or len(out) < limit):
                out.append(by_type[t].pop(0))
    return out


def validation_prompts(limit: int | None = None) -> list[ValidationPrompt]:
    """Validation prompts balanced across query types (round-robin over types when limited)."""
    return [ValidationPrompt(c.id, c.query_type, c.first_user) for c in balanced_conversations("validation", limit)]
