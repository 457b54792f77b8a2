"""Inputs of the rewriter: our corpus JSONL (neutral variants used) or plain chat JSONL, and ShareGPT-style JSON.

Accepted, per record (a JSON list in a .json file, or one object per line in a JSONL file):
- ours:     {"id", "messages": [{"role": "user"|"assistant"|"system", "content" | "neutral": ...}, ...]}
- ShareGPT: {"id", "conversations": [{"from": "human"|"gpt"|"system", "value": ...}, ...]}
  (also "user"/"assistant"/"chatgpt"/"bard"/"bing"/"model" as speaker names, the variants found in public dumps)

Normalisation (ShareGPT dumps are messy): a leading system message is kept; assistant messages before the first user
message are dropped; consecutive messages of one speaker are joined with a blank line; a trailing user message is
dropped. A record left with no assistant reply is skipped and reported, not an error.

Invariants:
- Every SourceConversation alternates user/assistant (after an optional system message), starts with a user
  message, ends with an assistant message, and has a non-empty id unique within the input.
- A record without an id gets "<file stem>-<index>" (0-based position in the file), stable across reruns.
- Structural problems (not an object, a message without text, an unknown speaker, a duplicate id) raise
  CorpusError naming the file, the line (JSONL) or record index (JSON) and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steerwarm.corpus.schema import CorpusError

USER_NAMES = frozenset({"human", "user"})
ASSISTANT_NAMES = frozenset({"gpt", "assistant", "chatgpt", "bard", "bing", "model"})


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class SourceConversation:
    id: str
    messages: tuple[Message, ...]
    source: str = field(default="", compare=False)

    @property
    def first_user(self) -> str:
        return next(m.content for m in self.messages if m.role == "user")

    @property
    def replies(self) -> list[int]:
        """Indices of the assistant messages (the turns to rewrite)."""
        return [i for i, m in enumerate(self.messages) if m.role == "assistant"]


@dataclass
class SourceFile:
    conversations: list[SourceConversation]
    skipped: list[str]


def _records(path: Path) -> list[tuple[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from exc
        return [(f"{path}[{i}]", rec) for i, rec in enumerate(data)]
    out: list[tuple[str, Any]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append((f"{path}:{n}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{path}:{n}: invalid JSON ({exc.msg})") from exc
    return out


def _raw_messages(rec: dict[str, Any], where: str) -> list[Message]:
    text_keys: tuple[str, ...]
    if "conversations" in rec:
        key, role_key, text_keys = "conversations", "from", ("value",)
    elif "messages" in rec:
        key, role_key, text_keys = "messages", "role", ("neutral", "content")
    else:
        raise CorpusError(f"{where}: needs a 'conversations' (ShareGPT) or 'messages' field")
    raw = rec[key]
    if not isinstance(raw, list):
        raise CorpusError(f"{where}: field {key!r} must be a list")
    out: list[Message] = []
    for i, m in enumerate(raw):
        at = f"{where}: {key}[{i}]"
        if not isinstance(m, dict):
            raise CorpusError(f"{at}: expected an object")
        speaker = str(m.get(role_key, "")).lower()
        role = ("user" if speaker in USER_NAMES else "assistant" if speaker in ASSISTANT_NAMES
                else "system" if speaker == "system" else None)
        if role is None:
            raise CorpusError(f"{at}: field {role_key!r} is {m.get(role_key)!r}; expected one of "
                              f"{sorted(USER_NAMES | ASSISTANT_NAMES | {'system'})}")
        content = next((m[k] for k in text_keys if k in m), None)
        if not isinstance(content, str):
            raise CorpusError(f"{at}: field {text_keys[-1]!r} must be a string")
        out.append(Message(role, content))
    return out


def normalise(messages: list[Message]) -> tuple[Message, ...]:
    """Alternating user/assistant messages (see module doc); empty when no assistant reply is left."""
    system = [m for m in messages[:1] if m.role == "system" and m.content.strip()]
    out: list[Message] = []
    for m in messages[len(system):]:
        if m.role == "system" or not m.content.strip():
            continue
        if not out and m.role != "user":
            continue
        if out and out[-1].role == m.role:
            out[-1] = Message(m.role, out[-1].content.rstrip() + "\n\n" + m.content.strip())
        else:
            out.append(Message(m.role, m.content.strip()))
    if out and out[-1].role == "user":
        out.pop()
    return tuple(system + out) if out else ()


def read_sources(path: str | Path) -> SourceFile:
    """Conversations to rewrite from a corpus/chat JSONL or a ShareGPT JSON/JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: no such input file")
    res = SourceFile([], [])
    seen: dict[str, str] = {}
    for idx, (where, rec) in enumerate(_records(path)):
        if not isinstance(rec, dict):
            raise CorpusError(f"{where}: expected a JSON object")
        rid = rec.get("id")
        if rid is not None and not isinstance(rid, str | int):
            raise CorpusError(f"{where}: field 'id' must be a string or an integer")
        cid = str(rid).strip() if rid is not None and str(rid).strip() else f"{path.stem}-{idx}"
        if cid in seen:
            raise CorpusError(f"{where}: field 'id': duplicate id {cid!r} (first at {seen[cid]})")
        seen[cid] = where
        msgs = normalise(_raw_messages(rec, where))
        if not msgs:
            res.skipped.append(f"{where}: {cid}: no user message followed by an assistant reply")
            continue
        res.conversations.append(SourceConversation(cid, msgs, where))
    return res
