"""Stage 8, the paper's conditioned error benchmark (Ibrahim, Hafner & Rocher), for any target (`steerwarm.targets`):
in-process, steered, fine-tuned or an OpenAI-compatible endpoint.

Invariant: a leaf of the pipeline: it uses targets and the stages below, nothing above; importing the package is
cheap (no torch, no model); heavy modules import what they need where used.
Module map: items (task items and loaders), medqa (the relative re-phrasing), contexts (interpersonal statements and
their seeded assignment), prompts (templates and the prompt grid), replies (the reply pair of likelihood mode),
refusal, matcher, judge, scoring (verdicts), store (a run folder), runner (a run, resumable), stats, summary,
compare, report, validate.
"""

from __future__ import annotations

TASKS = ("trivia", "truthfulqa", "disinfo", "medqa")
