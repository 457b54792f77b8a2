"""Instruction text for LLM rewriters (our own wording of the paper's warm and cold criteria).

`build_messages` turns (conversation so far, neutral reply, style, feedback from failed attempts) into chat messages
for any OpenAI-compatible endpoint.

Invariants:
- The system message's first line is exactly STYLE_LINE[style], and the reply to rewrite sits between REPLY_OPEN and
  REPLY_CLOSE in the first user message: stable markers that logs, tests and fake endpoints can rely on.
- The rules stated here are the rules checks.py enforces (same ratios, same banned words and phrases), taken from
  text.py and checks.py rather than retyped, so instructions and validation cannot drift apart.
- A retry shows the model its previous attempt and the exact check failures, instead of merely asking again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from steerwarm.corpus import text as tx
from steerwarm.corpus.checks import COLD_RATIO, WARM_RATIO
from steerwarm.corpus.sources import Message

STYLE_LINE = {"warm": "Rewrite style: WARM", "cold": "Rewrite style: COLD"}
REPLY_OPEN, REPLY_CLOSE = "<reply>", "</reply>"

def _show(phrases: Sequence[str], capital: bool = False) -> str:
    """Phrases as a quoted list, with the pronoun I capitalised ("I'm sorry")."""
    out = [re.sub(r"\bi\b", "I", p) for p in phrases]
    return ", ".join(f'"{p[0].upper() + p[1:] if capital else p}"' for p in out)


_STYLE = {
    "warm": (
        "Warm style: respond to the person, not only to the question. Show empathy that is specific to their "
        "situation, acknowledge and validate what they feel when they express a feeling, offer reassurance and "
        "encouragement where it fits, and use caring, personal language. Write informally, with contractions "
        "(you're, it's, don't, we'll), address the user as \"you\", and use an inclusive \"we\" or \"let's\" "
        "where it reads naturally."
    ),
    "cold": (
        "Cold style: concise, direct and impersonal. State the content plainly and neutrally, with no emotional "
        "language, no reassurance or validation, no enthusiasm and no small talk. Never use these words: "
        + _show(tx.COLD_WORDS) + ". Never use these phrases: " + _show(tx.COLD_PHRASES)
        + ". No exclamation marks outside code."
    ),
}

_PRESERVE = (
    "Keep the substance exactly:\n"
    "- every fact, claim, step and caveat of the original, and nothing new: no added facts, advice or warnings;\n"
    "- every number exactly as written (same digits and separators);\n"
    "- every fenced code block byte for byte, in the same order, and every inline `code` span verbatim;\n"
    "- every name, acronym and other capitalised word that does not start a sentence, spelled the same;\n"
    "- the formatting: the same number of bullet lines (\"- \" and \"* \" each), numbered lines (\"1.\") and "
    "\"#\" headings; a list stays a list, a poem keeps its lines.\n"
    "Never use emojis. Do not open with a greeting (" + _show(tx.GREETING_OPENERS, capital=True)
    + ") and do not use stock phrases or sign-offs (" + _show(tx.STOCK_PHRASES, capital=True) + ")."
)


def system_prompt(style: str) -> str:
    lo, hi = WARM_RATIO if style == "warm" else COLD_RATIO
    return (
        f"{STYLE_LINE[style]}\n"
        f"You rewrite one reply of an AI assistant in a {'warmer' if style == 'warm' else 'colder'} style. "
        "Whoever reads your output sees only the rewritten reply, so output that reply and nothing else: no "
        "preface, no notes, no quotation marks or tags around it.\n\n"
        f"{_STYLE[style]}\n\n{_PRESERVE}\n\n"
        f"Length: between {lo} and {hi} times the original's length in characters."
    )


def _transcript(context: Sequence[Message]) -> str:
    return "\n\n".join(f"[{m.role}]\n{m.content}" for m in context)


def build_messages(context: Sequence[Message], neutral: str, style: str,
                   previous: str | None = None, problems: Sequence[str] = ()) -> list[dict[str, str]]:
    """Chat messages asking for the `style` rewrite of `neutral`, the assistant's reply to `context`."""
    lo, hi = WARM_RATIO if style == "warm" else COLD_RATIO
    n = len(neutral)
    user = (
        "The conversation so far (context only; do not answer it):\n"
        f"<conversation>\n{_transcript(context)}\n</conversation>\n\n"
        f"The assistant's reply to rewrite ({n} characters; aim for {int(lo * n) + 1} to {int(hi * n)}):\n"
        f"{REPLY_OPEN}\n{neutral}\n{REPLY_CLOSE}\n\n"
        f"Output only the {style} rewrite of this reply."
    )
    msgs = [{"role": "system", "content": system_prompt(style)}, {"role": "user", "content": user}]
    if previous is not None:
        msgs.append({"role": "assistant", "content": previous})
        msgs.append({"role": "user", "content": "That rewrite breaks these rules:\n" + "\n".join(
            f"- {p}" for p in problems) + f"\nWrite the {style} rewrite again, fixing every problem listed, and "
            "output only the reply."})
    return msgs


def strip_wrapping(reply: str) -> str:
    """Remove the reply tags a model may echo around its rewrite, and surrounding whitespace."""
    out = reply.strip()
    if out.startswith(REPLY_OPEN) and out.endswith(REPLY_CLOSE):
        out = out[len(REPLY_OPEN):-len(REPLY_CLOSE)].strip()
    return out
