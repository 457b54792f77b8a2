"""Corpus schema: conversations whose assistant turns each come in neutral, warm and cold variants.

One JSONL line per conversation:
  {"id": "advice-train-001", "query_type": "advice", "split": "train",
   "messages": [{"role": "user", "content": "..."},
                {"role": "assistant", "neutral": "...", "warm": "...", "cold": "..."}, ...]}

Invariants:
- Messages alternate user / assistant, start with a user turn (an optional leading system turn aside) and end
  with an assistant turn; every assistant turn has all three non-empty variants.
- `query_type` is one of QUERY_TYPES and `split` one of SPLITS; ids are unique across the whole corpus.
- `Conversation.as_chat(variant)` yields plain chat messages for one style, the form training and scoring use.
- Loading errors name the file, the line and the field; a loaded conversation remembers its `source` ("file:line",
  empty when built in memory), which takes no part in equality.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from steerwarm.paths import corpus_data

QUERY_TYPES = ("refusal", "factual", "creative", "technical", "advice", "other")
SPLITS = ("train", "validation")
VARIANTS = ("neutral", "warm", "cold")
Variant = Literal["neutral", "warm", "cold"]


class CorpusError(ValueError):
    """A corpus file is malformed; the message names file, line and field."""


@dataclass(frozen=True)
class UserTurn:
    content: str
    role: str = "user"


@dataclass(frozen=True)
class AssistantTurn:
    neutral: str
    warm: str
    cold: str

    def variant(self, name: Variant) -> str:
        return str(getattr(self, name))


Turn = UserTurn | AssistantTurn


@dataclass(frozen=True)
class Conversation:
    id: str
    query_type: str
    split: str
    messages: tuple[Turn, ...]
    source: str = field(default="", compare=False)

    @property
    def first_user(self) -> str:
        return next(t.content for t in self.messages if isinstance(t, UserTurn) and t.role == "user")

    @property
    def assistant_turns(self) -> list[AssistantTurn]:
        return [t for t in self.messages if isinstance(t, AssistantTurn)]

    def as_chat(self, variant: Variant) -> list[dict[str, str]]:
        """Plain chat messages with every assistant turn in the given variant."""
        out: list[dict[str, str]] = []
        for t in self.messages:
            if isinstance(t, AssistantTurn):
                out.append({"role": "assistant", "content": t.variant(variant)})
            else:
                out.append({"role": t.role, "content": t.content})
        return out

    def to_json(self) -> dict[str, Any]:
        msgs: list[dict[str, str]] = []
        for t in self.messages:
            if isinstance(t, AssistantTurn):
                msgs.append({"role": "assistant", "neutral": t.neutral, "warm": t.warm, "cold": t.cold})
            else:
                msgs.append({"role": t.role, "content": t.content})
        return {"id": self.id, "query_type": self.query_type, "split": self.split, "messages": msgs}


def _text(obj: dict[str, Any], key: str, where: str) -> str:
    val = obj.get(key)
    if not isinstance(val, str) or not val.strip():
        raise CorpusError(f"{where}: field {key!r} must be a non-empty string")
    return val


def parse_conversation(obj: Any, where: str) -> Conversation:
    """Validate one decoded JSON object (see module invariants)."""
    if not isinstance(obj, dict):
        raise CorpusError(f"{where}: expected a JSON object")
    cid = _text(obj, "id", where)
    qtype = _text(obj, "query_type", where)
    if qtype not in QUERY_TYPES:
        raise CorpusError(f"{where}: field 'query_type' is {qtype!r}; expected one of {QUERY_TYPES}")
    split = _text(obj, "split", where)
    if split not in SPLITS:
        raise CorpusError(f"{where}: field 'split' is {split!r}; expected one of {SPLITS}")
    raw = obj.get("messages")
    if not isinstance(raw, list) or not raw:
        raise CorpusError(f"{where}: field 'messages' must be a non-empty list")
    turns: list[Turn] = []
    expect = "user"
    for i, m in enumerate(raw):
        at = f"{where}: messages[{i}]"
        if not isinstance(m, dict):
            raise CorpusError(f"{at}: expected an object")
        role = m.get("role")
        if role == "system" and i == 0:
            turns.append(UserTurn(_text(m, "content", at), role="system"))
            continue
        if role != expect:
            raise CorpusError(f"{at}: field 'role' is {role!r}; expected {expect!r} (turns alternate)")
        if role == "user":
            turns.append(UserTurn(_text(m, "content", at)))
            expect = "assistant"
        else:
            turns.append(AssistantTurn(*(_text(m, v, at) for v in VARIANTS)))
            expect = "user"
    if expect != "user":
        raise CorpusError(f"{where}: field 'messages' must end with an assistant turn")
    return Conversation(cid, qtype, split, tuple(turns), source=where)


def iter_jsonl(path: str | Path) -> Iterator[Conversation | CorpusError]:
    """Every non-blank line of a corpus file, parsed: a Conversation, or the CorpusError that line raised."""
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            rec: Conversation | CorpusError
            try:
                rec = parse_conversation(json.loads(line), where)
            except json.JSONDecodeError as exc:
                rec = CorpusError(f"{where}: invalid JSON ({exc.msg})")
            except CorpusError as exc:
                rec = exc
            yield rec


def read_jsonl(path: str | Path) -> Iterator[Conversation]:
    """Conversations of a corpus file; raises the first CorpusError."""
    for rec in iter_jsonl(path):
        if isinstance(rec, CorpusError):
            raise rec
        yield rec


def load_corpus(split: str | None = None, data_dir: str | Path | None = None) -> list[Conversation]:
    """All shipped conversations (optionally one split), in a stable order; ids checked for uniqueness."""
    data_dir = Path(data_dir) if data_dir is not None else corpus_data()
    splits = [split] if split else list(SPLITS)
    convs: list[Conversation] = []
    for s in splits:
        for qtype in QUERY_TYPES:
            path = data_dir / s / f"{qtype}.jsonl"
            if path.is_file():
                convs.extend(read_jsonl(path))
    _check_unique(convs)
    return convs


def _check_unique(convs: Iterable[Conversation]) -> None:
    seen: dict[str, Conversation] = {}
    for c in convs:
        if c.id in seen:
            raise CorpusError(f"{c.source or '?'}: field 'id': duplicate conversation id {c.id!r} "
                              f"(first at {seen[c.id].source or '?'})")
        seen[c.id] = c


def write_jsonl(convs: Iterable[Conversation], path: str | Path) -> None:
    with Path(path).open("w", encoding="utf-8") as fh:
        for c in convs:
            fh.write(json.dumps(c.to_json(), ensure_ascii=False) + "\n")
