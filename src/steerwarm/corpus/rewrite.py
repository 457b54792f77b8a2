"""Rewriting neutral conversations into warm and cold variants: backends and a resumable runner.

Backends implement `Rewriter.rewrite(context, neutral, style, previous, problems) -> text`:
- `OpenAIRewriter`: any OpenAI-compatible chat endpoint through the official `openai` client (base URL, model, key),
  with our instruction text (prompts.py). Transport errors — timeouts, connection errors, HTTP 429 and 5xx (and
  408/409) — are retried with exponential backoff (Retry-After honoured, capped); other HTTP errors (bad key, unknown
  model) and exhausted retries raise EndpointError, which stops the run.
- `RulesRewriter` (rules.py): deterministic and offline; weaker.

The runner (`run_rewrite`) rewrites every assistant turn of every input conversation into both styles; each rewrite
is validated with checks.check_variant and, when it fails, retried with the failures fed back (up to
`max_attempts`; once for deterministic backends). A conversation is written only when every rewrite passes;
otherwise it is recorded in the failures file with the last attempt and its problems — never silently kept.

Invariants (resume):
- OUT and the failures file are `records` JSONL logs: one line per finished conversation, flushed at once, from a
  single writer thread (fsync'ed at the end); a crash loses only conversations in flight. A torn last line (a kill
  mid-write) is cut off on the next run and its conversation redone; damage before the end stops with its line.
- A rerun skips ids already in OUT and ids already in the failures file (unless `retry_failed`, which first removes
  them from the failures file), so every input id ends up at most once in OUT or in the failures file, never both.
- When the endpoint is down (EndpointError) the run stops: conversations already finished stay written, pending ones
  are not recorded as failures, and the same command resumes where it stopped.
- Output conversations follow schema.py: query_type from the rule classifier, the given split, the input's messages
  with each assistant turn's neutral, warm and cold text.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from steerwarm.corpus.checks import check_variant
from steerwarm.corpus.classify import classify
from steerwarm.corpus.prompts import build_messages, strip_wrapping
from steerwarm.corpus.schema import SPLITS, AssistantTurn, Conversation, CorpusError, Turn, UserTurn
from steerwarm.corpus.sources import Message, SourceConversation
from steerwarm.records import RecordLog, read_numbered, read_records, rewrite_records

STYLES = ("warm", "cold")
RETRY_STATUS = frozenset({408, 409, 429})


class EndpointError(RuntimeError):
    """The rewriting endpoint failed for good (retries exhausted, or a non-retryable error); the run stops.

    Raised by run_rewrite with `report` set to what the run did before stopping."""

    def __init__(self, message: str, report: RunReport | None = None) -> None:
        super().__init__(message)
        self.report = report


class Rewriter(Protocol):
    name: str
    deterministic: bool

    def rewrite(self, context: Sequence[Message], neutral: str, style: str,
                previous: str | None = None, problems: Sequence[str] = ()) -> str: ...


class OpenAIRewriter:
    """Rewrites through an OpenAI-compatible chat-completions endpoint (see module doc for the retry policy)."""

    deterministic = False

    def __init__(self, base_url: str | None, model: str, api_key: str, *, temperature: float = 0.7,
                 timeout: float = 120.0, max_retries: int = 5, backoff: float = 1.0, max_backoff: float = 60.0,
                 max_tokens: int | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        import openai

        self.name = f"openai:{model}"
        self.model = model
        self.temperature = temperature
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_tokens = max_tokens
        self.sleep = sleep
        self.calls = 0
        self._lock = threading.Lock()
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)

    def rewrite(self, context: Sequence[Message], neutral: str, style: str,
                previous: str | None = None, problems: Sequence[str] = ()) -> str:
        return strip_wrapping(self.complete(build_messages(context, neutral, style, previous, problems)))

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        delay = self.backoff * (2.0 ** attempt) * random.uniform(0.75, 1.25)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self.max_backoff)

    def complete(self, messages: list[dict[str, str]]) -> str:
        """The assistant text of one chat completion, retrying transient failures."""
        import openai

        reason = ""
        for attempt in range(self.max_retries + 1):
            with self._lock:
                self.calls += 1
            retry_after: float | None = None
            try:
                kwargs: dict[str, Any] = {"model": self.model, "messages": messages,
                                          "temperature": self.temperature}
                if self.max_tokens:
                    kwargs["max_tokens"] = self.max_tokens
                resp = self._client.chat.completions.create(**kwargs)
                # no text is a failed rewrite (the checks reject it and the runner retries), not a transport error
                return (resp.choices[0].message.content or "") if resp.choices else ""
            except openai.APIStatusError as exc:
                status = exc.status_code
                if status < 500 and status not in RETRY_STATUS:
                    raise EndpointError(f"endpoint refused the request: HTTP {status}: {exc.message}") from exc
                reason = f"HTTP {status}: {exc.message}"
                header: str | None = exc.response.headers.get("retry-after") if exc.response is not None else None
                try:
                    retry_after = float(header) if header else None
                except ValueError:
                    retry_after = None
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            except openai.APIError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if attempt == self.max_retries:
                raise EndpointError(f"endpoint failed {self.max_retries + 1} times; last error {reason}")
            self.sleep(self._delay(attempt, retry_after))
        raise AssertionError("unreachable")


def make_rewriter(backend: str, *, base_url: str | None = None, model: str | None = None,
                  api_key_env: str = "OPENAI_API_KEY", **kwargs: Any) -> Rewriter:
    """The named backend ("openai" or "rules"); openai needs a model and reads its key from `api_key_env`."""
    if backend == "rules":
        from steerwarm.corpus.rules import RulesRewriter

        return RulesRewriter()
    if backend == "openai":
        if not model:
            raise ValueError("the openai backend needs --model (the endpoint's model name)")
        key = os.environ.get(api_key_env)
        if not key:
            raise ValueError(f"environment variable {api_key_env} is not set; export the endpoint's API key there "
                             "(any non-empty value for a local server without keys)")
        return OpenAIRewriter(base_url, model, key, **kwargs)
    raise ValueError(f"unknown backend {backend!r}; expected 'openai' or 'rules'")


# --- one conversation --------------------------------------------------------------------------------------------


@dataclass
class Attempts:
    """Bookkeeping of one conversation's rewrites (merged into the run report)."""

    variants: int = 0
    first_pass: int = 0
    calls: int = 0
    problems: Counter[str] = field(default_factory=Counter)


@dataclass
class Outcome:
    source: SourceConversation
    conversation: Conversation | None
    failure: dict[str, Any] | None
    attempts: Attempts


class _Stopped(Exception):
    pass


def rewrite_conversation(src: SourceConversation, backend: Rewriter, *, split: str = "train",
                         max_attempts: int = 3, stop: threading.Event | None = None) -> Outcome:
    """Warm and cold variants for every assistant turn of `src`, validated; a failure stops at the first turn
    whose rewrite still fails after `max_attempts`."""
    stats = Attempts()
    tries = 1 if backend.deterministic else max_attempts
    turns: list[Turn] = []
    for i, msg in enumerate(src.messages):
        if msg.role != "assistant":
            turns.append(UserTurn(msg.content, role=msg.role))
            continue
        texts: dict[str, str] = {}
        for style in STYLES:
            previous: str | None = None
            problems: list[str] = []
            stats.variants += 1
            for attempt in range(tries):
                if stop is not None and stop.is_set():
                    raise _Stopped
                stats.calls += 1
                text = backend.rewrite(src.messages[:i], msg.content, style, previous, problems)
                issues = check_variant(msg.content, text, style)
                stats.problems.update(x.check for x in issues)
                if not issues:
                    stats.first_pass += attempt == 0
                    texts[style] = text
                    break
                previous, problems = text, [f"{x.check}: {x.detail}" for x in issues]
            else:
                turn = sum(isinstance(t, AssistantTurn) for t in turns)
                failure = {"id": src.id, "source": src.source, "turn": turn, "message": i,
                           "style": style, "attempts": tries, "problems": problems, "last": previous}
                return Outcome(src, None, failure, stats)
        turns.append(AssistantTurn(msg.content, texts["warm"], texts["cold"]))
    first_reply = next(t for t in turns if isinstance(t, AssistantTurn)).neutral
    conv = Conversation(src.id, classify(src.first_user, first_reply), split, tuple(turns))
    return Outcome(src, conv, None, stats)


# --- the resumable run -------------------------------------------------------------------------------------------


def failures_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".failed.jsonl")


def _ids_in(path: Path) -> list[str]:
    """Ids recorded in a JSONL results file; a torn last line (crash mid-write) is cut off the file."""
    ids: list[str] = []
    for n, rec in read_numbered(path, repair=True):
        if not isinstance(rec.get("id"), str):
            raise CorpusError(f"{path}:{n}: field 'id' missing in a results file")
        ids.append(rec["id"])
    return ids


@dataclass
class RunReport:
    out: Path
    failed_file: Path
    total: int = 0
    already_done: int = 0
    previously_failed: int = 0
    done: int = 0
    failed: int = 0
    variants: int = 0
    first_pass: int = 0
    calls: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    stopped: str | None = None

    def add(self, a: Attempts) -> None:
        self.variants += a.variants
        self.first_pass += a.first_pass
        self.calls += a.calls
        self.problems.update(a.problems)

    @property
    def pass_rate(self) -> float:
        """Share of conversations attempted in this run that were written (all rewrites passed the checks)."""
        n = self.done + self.failed
        return self.done / n if n else float("nan")

    @property
    def first_pass_rate(self) -> float:
        """Share of variant rewrites that passed the checks at the first attempt."""
        return self.first_pass / self.variants if self.variants else float("nan")

    def summary(self) -> str:
        lines = [f"{self.total} conversations in input: {self.done} rewritten now, {self.failed} failed now, "
                 f"{self.already_done} already in {self.out}, {self.previously_failed} skipped as previously "
                 f"failed ({self.failed_file})"]
        if self.done + self.failed:
            lines.append(f"conversation pass rate {self.pass_rate:.1%}; variant rewrites passing at first attempt "
                         f"{self.first_pass_rate:.1%} ({self.first_pass}/{self.variants}); {self.calls} rewrites")
        if self.problems:
            lines.append("check failures over all attempts: " + ", ".join(f"{k} {v}" for k, v in
                                                                          self.problems.most_common()))
        if self.stopped:
            lines.append(f"STOPPED: {self.stopped}. Rerun the same command to resume.")
        return "\n".join(lines)


def run_rewrite(sources: Sequence[SourceConversation], backend: Rewriter, out: str | Path, *,
                split: str = "train", concurrency: int = 4, max_attempts: int = 3, retry_failed: bool = False,
                progress: bool = False) -> RunReport:
    """Rewrite `sources` into OUT (appending; resumable — see module invariants). Raises EndpointError after
    writing what finished when the endpoint fails for good; the report is attached as `exc.report`."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}; expected one of {SPLITS}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    failed_file = failures_path(out)
    report = RunReport(out, failed_file, total=len(sources))
    done = set(_ids_in(out))
    failed = set(_ids_in(failed_file))
    wanted = {s.id for s in sources}
    if retry_failed and failed & wanted:
        rewrite_records(failed_file, [r for r in read_records(failed_file) if r["id"] not in wanted])
        failed -= wanted
    todo = [s for s in sources if s.id not in done and s.id not in failed]
    report.already_done = sum(s.id in done for s in sources)
    report.previously_failed = sum(s.id in failed and s.id not in done for s in sources)

    stop = threading.Event()
    error: EndpointError | None = None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc=f"rewrite ({backend.name})", unit="conv")
    with RecordLog(out).open() as fo, RecordLog(failed_file).open() as ff, \
            ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        queue = iter(todo)
        running: set[Future[Outcome]] = set()

        def submit(n: int) -> None:
            for src in queue:
                running.add(pool.submit(rewrite_conversation, src, backend, split=split,
                                        max_attempts=max_attempts, stop=stop))
                n -= 1
                if n <= 0:
                    return

        submit(2 * max(1, concurrency))
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                running.discard(fut)
                try:
                    res = fut.result()
                except _Stopped:
                    continue
                except EndpointError as exc:
                    error = error or exc
                    stop.set()
                    continue
                report.add(res.attempts)
                if res.conversation is not None:
                    fo.append(res.conversation.to_json())
                    report.done += 1
                elif res.failure is not None:
                    ff.append(res.failure)
                    report.failed += 1
                if bar is not None:
                    bar.update(1)
                if not stop.is_set():
                    submit(1)
    if bar is not None:
        bar.close()
    if error is not None:
        report.stopped = str(error)
        raise EndpointError(f"{error}; {report.done} conversations written this run, rerun to resume", report)
    return report
