"""Forked dial points: the benchmark of every local dial point of a likelihood sweep run at once, each batch scored
once for all the points that still need it (`targets.likelihood.score_pairs_forked`: the layers below a point's
first steered layer run once for all points not yet steered), each point's records appended to its own run folder
by its own `run_benchmark`.

How: `run_lockstep` runs one job per point in a worker thread (the sweep's job is `bench.runner.run_benchmark`,
unchanged: same records, run.json lock, resume and summary as a separate run); the point's target hands each batch
to `Lockstep.ask` and waits. The calling thread serves: when every live point is waiting (or finished) it takes the
waiting batch that sorts first (likelihood runs batch in text order, `runner.batch_order`), scores the prompts of
it not yet scored for every live point that has them pending, in one forked pass, and answers every waiting point
whose whole batch is now scored.

Invariants:
- A point gets, for each prompt, its score under its own steering; in a fresh sweep every point asks for the same
  batches in the same order, so each batch is scored once for all points with exactly the batch composition a
  separate run has. Points resumed at different places first catch up one at a time (the lagging batch sorts
  first) and then merge; a batch that overlaps another point's differently cut batch is scored in the asker's
  composition for both (batched scores equal scores alone to float rounding: `targets.likelihood`).
- A prompt is scored for a point only when the point has it pending (`pending`, from its run folder at the start),
  so a point that already holds it costs nothing.
- Torch runs only in the serving (calling) thread; workers build grids and read and write their own run folders.
- A failure anywhere (a worker's settings lock, the scorer, Ctrl-C) stops every worker at its next request, after
  what it has appended, and is raised by `run_lockstep` once all workers have ended; a killed sweep resumes like
  any other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

Key = tuple[str, tuple[str, str]]  # (user message, (correct reply, wrong reply))
S = TypeVar("S")  # a score
R = TypeVar("R")  # a job's result
ScoreFn = Callable[[Sequence[Key], Sequence[str]], Mapping[str, Sequence[S]]]


class LockstepAborted(RuntimeError):
    """Raised in a worker when another point or the scorer failed."""


class Lockstep(Generic[S]):
    """Batches asked by the points' workers, served together by `serve` (see the module doc)."""

    def __init__(self, pending: Mapping[str, set[Key]], score: ScoreFn[S]) -> None:
        self._cond = threading.Condition()
        self._pending = {label: set(keys) for label, keys in pending.items()}
        self._score = score
        self._live = set(pending)
        self._asks: dict[str, list[Key]] = {}
        self._answers: dict[str, list[S]] = {}
        self._scored: dict[str, dict[Key, S]] = {label: {} for label in pending}
        self._error: BaseException | None = None
        self.passes = 0  # forked passes served
        self.streams = 0  # point-batches scored by them

    def ask(self, label: str, keys: Sequence[Key]) -> list[S]:
        """A worker's batch: blocks until every key is scored for `label`; its scores in order."""
        with self._cond:
            if label not in self._live:
                raise ValueError(f"point {label!r} is not part of this lockstep")
            self._asks[label] = list(keys)
            self._cond.notify_all()
            while label not in self._answers:
                if self._error is not None:
                    self._asks.pop(label, None)
                    raise LockstepAborted("the sweep stopped: another point or the scorer failed")
                self._cond.wait()
            return self._answers.pop(label)

    def finish(self, label: str, error: BaseException | None = None) -> None:
        """A worker ended (with `error` when it failed: that stops the others)."""
        with self._cond:
            self._live.discard(label)
            self._asks.pop(label, None)
            self._scored.pop(label, None)
            if error is not None and self._error is None and not isinstance(error, LockstepAborted):
                self._error = error
            self._cond.notify_all()

    def abort(self, error: BaseException) -> None:
        with self._cond:
            if self._error is None:
                self._error = error
            self._cond.notify_all()

    def _answer_ready(self) -> None:
        """Answer every waiting point whose whole batch is scored (under the lock)."""
        for label, keys in list(self._asks.items()):
            have = self._scored[label]
            if all(k in have for k in keys):
                self._answers[label] = [have[k] for k in keys]
                del self._asks[label]

    def serve(self) -> None:
        """Serve batches until every worker has finished; raises the first failure."""
        while True:
            with self._cond:
                self._answer_ready()
                self._cond.notify_all()
                while self._error is None and self._live and set(self._asks) != self._live:
                    self._cond.wait()
                    self._answer_ready()
                if self._error is not None:
                    raise self._error
                if not self._live:
                    return
                first = min(self._asks, key=lambda label: (min(self._asks[label]), label))
                keys = [k for k in self._asks[first] if k not in self._scored[first]]
                streams = sorted(label for label in self._live
                                 if any(k in self._pending[label] and k not in self._scored[label] for k in keys))
                streams = streams if first in streams else [first, *streams]
            try:
                scores = self._score(keys, streams)
            except BaseException as exc:
                self.abort(exc)
                raise
            with self._cond:
                self.passes += 1
                self.streams += len(streams)
                for label in streams:
                    if label in self._scored:
                        self._scored[label].update(zip(keys, scores[label], strict=True))


def run_lockstep(jobs: Mapping[str, Callable[[], R]], lockstep: Lockstep[Any]) -> dict[str, R]:
    """Run each point's job in a worker thread while this thread serves `lockstep`; every job's result by label.
    The first failure (a job's or the scorer's) is raised once all workers have ended."""
    results: dict[str, R] = {}
    errors: list[BaseException] = []

    def work(label: str, job: Callable[[], R]) -> None:
        try:
            results[label] = job()
        except BaseException as exc:  # handed to the serving thread, which raises it
            errors.append(exc)
            lockstep.finish(label, exc)
        else:
            lockstep.finish(label)

    threads = [threading.Thread(target=work, args=(label, job), name=f"point {label}", daemon=True)
               for label, job in jobs.items()]
    for t in threads:
        t.start()
    try:
        lockstep.serve()
    except BaseException as exc:
        lockstep.abort(exc)
        raise
    finally:
        for t in threads:
            t.join()
    first = next((e for e in errors if not isinstance(e, LockstepAborted)), None)
    if first is not None:
        raise first
    return results

