"""The paper's conditioned error benchmark (Ibrahim, Hafner & Rocher), for any target: in-process, steered,
fine-tuned or an OpenAI-compatible endpoint.

Invariant: importing the package is cheap (no torch, no model); heavy modules import what they need where used.
Module map: items (task items and loaders), medqa (the relative re-phrasing), contexts (interpersonal statements and
their seeded assignment), prompts (templates and the prompt grid), targets (what is scored), likelihood (in-process
answer log-probabilities), endpoint (OpenAI-compatible client), refusal, matcher, judge, scoring (verdicts),
store (results.jsonl), runner (a run, resumable), stats, summary, compare, report, validate, cli.
"""

from __future__ import annotations

TASKS = ("trivia", "truthfulqa", "disinfo", "medqa")
