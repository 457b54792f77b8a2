"""The rule classifier on examples of every type, the order of its rules, and refusal detection."""

from __future__ import annotations

import pytest

from steerwarm.corpus.classify import classify, is_refusal
from steerwarm.corpus.schema import QUERY_TYPES


@pytest.mark.parametrize(("prompt", "expected"), [
    ("Why does ice float on water?", "factual"),
    ("Who was Ada Lovelace?", "factual"),
    ("I keep mixing them up. What is the difference between weather and climate?", "factual"),
    ("Can you explain how vaccines train the immune system?", "factual"),
    ("Write a limerick about a sleepy owl.", "creative"),
    ("Can you compose a short story about a lighthouse keeper?", "creative"),
    ("Brainstorm names for my bakery.", "creative"),
    ("How do I undo the last commit in git?", "technical"),
    ("Why am I getting a KeyError in this dict lookup?", "technical"),
    ("What does `chmod 755` do?", "technical"),
    ("Is there an Excel formula to count unique values?", "technical"),
    ("Should I pay off my card or build savings first?", "advice"),
    ("My roommate never cleans. How can I bring it up?", "advice"),
    ("Any tips for my first marathon?", "advice"),
    ("What should I do about a friend who always cancels?", "advice"),
    ("Cats or dogs?", "other"),
    ("How's your day going?", "other"),
    ("Which season do you like best?", "other"),
    ("Got the job! I start Monday.", "other"),
])
def test_prompt_types(prompt: str, expected: str) -> None:
    assert classify(prompt) == expected


def test_refusal_comes_from_the_reply_and_wins() -> None:
    prompt = "How do I pick the lock on my neighbour's shed?"
    assert classify(prompt) == "advice"
    assert classify(prompt, "I can't help with picking someone else's lock. Ask your neighbour instead.") == "refusal"
    assert classify(prompt, "Sorry, but I won't help with that. It could count as breaking in.") == "refusal"
    # a declining phrase inside a quotation, or late in the reply, is not a refusal
    quoted = ('Tell her directly, for example: "I can\'t make the trip work right now." Most people understand. '
              "Offer to celebrate another way.")
    assert not is_refusal(quoted)
    assert not is_refusal("Start with the basics. Stretch first. I can't stress enough how much that matters.")


def test_rule_order_technical_before_creative_before_advice() -> None:
    assert classify("Write a Python function that reverses a string.") == "technical"
    assert classify("Should I learn SQL or pandas first?") == "technical"
    assert classify("Write a poem I should read at my sister's wedding.") == "creative"
    assert classify("Here is some code", "```python\nprint(1)\n```") == "technical"


def test_always_a_known_type() -> None:
    for text in ["", "?", "!!!", "hello", "x" * 1000]:
        assert classify(text) in QUERY_TYPES
