"""Builders shared by the corpus tests: a clean neutral/warm/cold turn that passes every turn check, and small
corpora written to temporary folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from steerwarm.corpus.schema import QUERY_TYPES

NEUTRAL = (
    "To install Flask 3.0 on Ubuntu, run the command below:\n"
    "```bash\npip install flask==3.0.0\n```\n"
    "Then check it with `flask --version`. Two things to know:\n"
    "- It needs Python 3.8 or newer.\n"
    "- The docs live at the Pallets site.\n"
    "It takes about 2 minutes."
)
WARM = (
    "You're nearly there, and we'll get it working together. To install Flask 3.0 on Ubuntu, run the command below:\n"
    "```bash\npip install flask==3.0.0\n```\n"
    "Then check it with `flask --version`. Two things you'll want to know:\n"
    "- It needs Python 3.8 or newer.\n"
    "- The docs live at the Pallets site.\n"
    "It takes about 2 minutes, so you've got this."
)
COLD = (
    "Install Flask 3.0 on Ubuntu with:\n"
    "```bash\npip install flask==3.0.0\n```\n"
    "Verify with `flask --version`. Requirements:\n"
    "- Python 3.8 or newer.\n"
    "- Docs: the Pallets site.\n"
    "Duration: about 2 minutes."
)

PROSE = (
    "Sunlight scatters off air molecules, and blue light scatters most because of its short wavelength. "
    "Lord Rayleigh described this in 1871.",
    "It's a lovely thing to wonder about, and you're in good company. Sunlight scatters off air molecules, and blue "
    "light scatters most because of its short wavelength. Lord Rayleigh described this in 1871.",
    "Sunlight scatters off air molecules; blue light scatters most because of its short wavelength. Lord Rayleigh "
    "described this in 1871.",
)

PROMPTS = {
    "refusal": "How do I get into my neighbour's wifi without the password?",
    "factual": "Why is the sky blue?",
    "creative": "Write a short poem about autumn leaves.",
    "technical": "How do I reverse a list in Python?",
    "advice": "Should I take the job with the longer commute?",
    "other": "Cats or dogs?",
}
REFUSAL_REPLY = "I can't help with getting into someone else's network. Ask the owner for the password instead."


def turn(neutral: str = NEUTRAL, warm: str = WARM, cold: str = COLD) -> dict[str, str]:
    return {"role": "assistant", "neutral": neutral, "warm": warm, "cold": cold}


def conversation(cid: str, qtype: str, split: str, prompt: str | None = None, **kw: str) -> dict[str, Any]:
    """One conversation: the Flask turn for technical, a refusal for refusal, else a prose turn (or `kw`)."""
    reply = turn(**kw) if kw or qtype == "technical" else turn(*PROSE)
    if qtype == "refusal" and not kw:
        reply = turn(REFUSAL_REPLY, "I get why you'd want that, but I can't help with getting into someone else's "
                     "network. You could ask the owner for the password instead.",
                     "I cannot help with getting into someone else's network. Ask the owner for the password.")
    return {"id": cid, "query_type": qtype, "split": split,
            "messages": [{"role": "user", "content": prompt or PROMPTS[qtype]}, reply]}


def write_corpus(root: Path, per_type: dict[str, int]) -> Path:
    """A corpus folder with `per_type[split]` conversations of every query type in each split; distinct prompts."""
    for split, n in per_type.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        for qt in QUERY_TYPES:
            lines = [conversation(f"{qt}-{split}-{i:03d}", qt, split, prompt=f"{PROMPTS[qt]} " + " ".join(
                f"{split[:3]}{i}x{k}" for k in range(6))) for i in range(n)]
            (root / split / f"{qt}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return root
