"""Greedy answers to user prompts, kept in an append-only JSONL log so that long runs resume.

Invariants:
- Every answer is a single-turn chat (the model's own template and default system prompt), greedy, so the same
  model, steering and token budget always give the same text.
- A log row is keyed by (key, prompt id), where the key (`answer_key`) names everything that determines the answer:
  model fingerprint, steering vector and coefficient, token budget. A rerun reuses a row only under the same key.
- The log is a `records` JSONL log: rows are appended, flushed and fsync'ed batch by batch, so a killed run loses at
  most the batch in flight; a torn last line (a kill mid-write) is dropped (cut off before the next append) and its
  prompt is answered again; damage before the end is an error naming the line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from steerwarm.corpus.validation import ValidationPrompt
from steerwarm.model.chat import chat_text
from steerwarm.model.load import LoadedModel
from steerwarm.records import append_records, read_records
from steerwarm.steer.generate import GenerationConfig, generate_texts
from steerwarm.steer.hooks import SteerSpec
from steerwarm.steer.vector import SteeringVector

Generate = Callable[[list[str]], list[str]]


def answer_key(**parts: Any) -> str:
    """A stable key naming what determines an answer (sorted JSON of the given parts)."""
    return json.dumps(parts, sort_keys=True, default=str)


def vector_id(vector: SteeringVector) -> str:
    """Short content hash of a vector's directions and norms (names and metadata do not count)."""
    h = hashlib.sha256()
    for layer in sorted(vector.directions):
        h.update(f"{layer}:{vector.norms[layer]!r};".encode())
        h.update(vector.directions[layer].numpy().tobytes())
    return h.hexdigest()[:16]


def greedy_answers(loaded: LoadedModel, users: Sequence[str], *, specs: Sequence[SteerSpec] = (),
                   max_new_tokens: int = 96) -> list[str]:
    """Greedy single-turn answers to `users`, steered by `specs` (none: the model as it is)."""
    prompts = [chat_text(loaded, [{"role": "user", "content": u}]) for u in users]
    return generate_texts(loaded, prompts, specs=specs, config=GenerationConfig(max_new_tokens=max_new_tokens))


class AnswerLog:
    """Answers keyed by (key, prompt id) in a JSONL file (or only in memory when `path` is None)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.rows: dict[tuple[str, str], str] = {}
        for row in read_records(path) if path is not None else []:
            if "key" in row and "id" in row and "text" in row:
                self.rows[(str(row["key"]), str(row["id"]))] = str(row["text"])

    def answers(self, key: str, prompts: Sequence[ValidationPrompt], generate: Generate, *, batch_size: int = 8,
                desc: str = "answers", progress: bool = True) -> list[str]:
        """The answer to every prompt under `key`, generating (batch by batch) only those not logged yet."""
        todo = [p for p in prompts if (key, p.id) not in self.rows]
        if todo:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            with tqdm(total=len(todo), desc=desc, disable=not progress) as bar:
                for start in range(0, len(todo), batch_size):
                    chunk = todo[start:start + batch_size]
                    texts = generate([p.text for p in chunk])
                    if len(texts) != len(chunk):
                        raise RuntimeError(f"generator returned {len(texts)} answers for {len(chunk)} prompts")
                    self._append(key, chunk, texts)
                    bar.update(len(chunk))
        return [self.rows[(key, p.id)] for p in prompts]

    def _append(self, key: str, prompts: Sequence[ValidationPrompt], texts: Sequence[str]) -> None:
        rows = []
        for p, t in zip(prompts, texts, strict=True):
            self.rows[(key, p.id)] = t
            rows.append({"key": key, "id": p.id, "prompt": p.text, "text": t})
        if self.path is not None:
            append_records(self.path, rows)


def model_answers(loaded: LoadedModel, prompts: Sequence[ValidationPrompt], log: AnswerLog, *, max_new_tokens: int = 96,
                  batch_size: int = 8, desc: str | None = None) -> list[str]:
    """The unsteered model's greedy answers, through the log."""
    key = answer_key(model=loaded.fingerprint, max_new_tokens=max_new_tokens)
    return log.answers(key, prompts, lambda us: greedy_answers(loaded, us, max_new_tokens=max_new_tokens),
                       batch_size=batch_size, desc=desc or f"answers {loaded.name}")


def steered_answers(loaded: LoadedModel, vector: SteeringVector, coef: float, prompts: Sequence[ValidationPrompt],
                    log: AnswerLog, *, layers: Sequence[int] | None = None, max_new_tokens: int = 96,
                    batch_size: int = 8) -> list[str]:
    """Greedy answers of `loaded` steered by raw coefficient `coef` of `vector` (coefficient 0: unsteered)."""
    if coef == 0:
        return model_answers(loaded, prompts, log, max_new_tokens=max_new_tokens, batch_size=batch_size)
    use = list(layers) if layers is not None else list(vector.layers)
    key = answer_key(model=loaded.fingerprint, vector=vector_id(vector), layers=use, coef=float(coef),
                     max_new_tokens=max_new_tokens)
    spec = SteerSpec(vector, float(coef), use)
    return log.answers(key, prompts, lambda us: greedy_answers(loaded, us, specs=[spec],
                                                               max_new_tokens=max_new_tokens),
                       batch_size=batch_size, desc=f"steered {coef:+g}")
