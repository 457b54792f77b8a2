"""Measurements: a set of answers read by the warmth meter (p_warm) and the coherence cost (the base model's mean
negative log-likelihood of the answer given the prompt), as mean and bootstrap standard error over prompts.

Invariants:
- Steered and fine-tune answers are greedy, on the same prompts with one token budget, cached in an answer log.
- Coefficient 0 is the unsteered base model; `Meter` is injectable so tests can measure without a classifier.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from steerwarm.corpus.validation import ValidationPrompt
from steerwarm.meter.compare import base_nll
from steerwarm.meter.summary import Summary, summarize
from steerwarm.model.load import LoadedModel
from steerwarm.steer.answers import AnswerLog, model_answers, steered_answers
from steerwarm.steer.vector import SteeringVector


@dataclass
class Meter:
    """Warmth (p_warm per text) and coherence cost (NLL per (prompt, answer)); injectable for tests."""

    p_warm: Callable[[Sequence[str]], list[float]]
    nll: Callable[[Sequence[str], Sequence[str]], list[float]]

    @classmethod
    def default(cls, scorer: LoadedModel) -> Meter:
        """p_warm from the shipped corpus's classifier; NLL under `scorer` (the base model)."""
        from steerwarm.meter.classifier import WarmthClassifier

        clf = WarmthClassifier.default()
        return cls(clf.p_warm, lambda prompts, answers: base_nll(scorer, prompts, answers))

    def measure(self, label: str, coef: float | None, prompts: Sequence[ValidationPrompt],
                answers: Sequence[str]) -> Measurement:
        return Measurement(label, coef, summarize(self.p_warm(list(answers))),
                           summarize(self.nll([p.text for p in prompts], list(answers))))


@dataclass(frozen=True)
class Measurement:
    """Meter readings of one set of answers: steered at `coef`, or a fine-tune (label says which)."""

    label: str
    coef: float | None
    p_warm: Summary
    nll: Summary

    def row(self) -> dict[str, Any]:
        return {"label": self.label, "coef": self.coef, "p_warm": self.p_warm.mean, "p_warm_se": self.p_warm.se,
                "nll": self.nll.mean, "nll_se": self.nll.se, "n": self.p_warm.n}


def measure_steered(loaded: LoadedModel, vector: SteeringVector, coef: float, prompts: Sequence[ValidationPrompt],
                    meter: Meter, log: AnswerLog, *, layers: Sequence[int] | None = None, max_new_tokens: int = 96,
                    batch_size: int = 8) -> Measurement:
    answers = steered_answers(loaded, vector, coef, prompts, log, layers=layers, max_new_tokens=max_new_tokens,
                              batch_size=batch_size)
    label = "base" if coef == 0 else f"coef {coef:+g} @ {list(layers) if layers is not None else vector.layers}"
    return meter.measure(label, coef, prompts, answers)


def measure_curve(loaded: LoadedModel, vector: SteeringVector, prompts: Sequence[ValidationPrompt],
                  coefs: Sequence[float], meter: Meter, log: AnswerLog, *, layers: Sequence[int] | None = None,
                  max_new_tokens: int = 96, batch_size: int = 8) -> list[Measurement]:
    """Measurements at 0 and every coefficient in `coefs`, sorted by coefficient."""
    grid = sorted({0.0, *(float(c) for c in coefs)})
    return [measure_steered(loaded, vector, c, prompts, meter, log, layers=layers, max_new_tokens=max_new_tokens,
                            batch_size=batch_size) for c in grid]


def measure_finetune(finetuned: LoadedModel, prompts: Sequence[ValidationPrompt], meter: Meter, log: AnswerLog, *,
                      label: str, max_new_tokens: int = 96, batch_size: int = 8) -> Measurement:
    """Meter readings of a fine-tune's own greedy answers, scored like the steered ones."""
    answers = model_answers(finetuned, prompts, log, max_new_tokens=max_new_tokens, batch_size=batch_size,
                            desc=f"answers {label}")
    return meter.measure(label, None, prompts, answers)
