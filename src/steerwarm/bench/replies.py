"""Replies scored in likelihood mode: the correct and the wrong answer of an item as assistant replies.

Invariant: both replies assert their answer with the same sentence, so they differ only in the answer: trivia,
truthfulqa and medqa `The answer is {answer}.` (no second period when the answer ends with one), disinfo the true
and the false statement themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from steerwarm.bench.items import Item

if TYPE_CHECKING:

    pass


def answer_reply(answer: str) -> str:
    return f"The answer is {answer}" + ("" if answer.endswith(".") else ".")


def replies(item: Item) -> tuple[str, str]:
    """(correct reply, wrong reply) for an item, as defined in the module doc."""
    if item.task == "disinfo":
        return item.correct, item.wrong
    return answer_reply(item.correct), answer_reply(item.wrong)
