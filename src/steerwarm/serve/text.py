"""Text from tokens, one token at a time: incremental detokenization, stop sequences, token pieces for logprobs.

Invariants:
- `IncrementalDecoder`: the concatenation of every delta it returns (plus `flush()`) equals
  `tokenizer.decode(all_tokens)` for byte-level BPE tokenizers (the default model's), and a delta never ends inside
  an incomplete UTF-8 character (such text is held back until the character completes, or until `flush`).
  Each call decodes only a short window of recent tokens, so the cost per token does not grow with length.
- `StopMatcher`: visible text never contains a stop sequence, and text that could still turn into one is held back
  from streaming until it cannot; so streamed deltas concatenate to the final text exactly.
- `TokenPieces`: the string and raw bytes of one token (OpenAI's `token`/`bytes` fields); a token that is not valid
  UTF-8 on its own is written `bytes:\\xNN...` as OpenAI does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class IncrementalDecoder:
    """Turn a growing list of token ids into text deltas (the prefix/read-offset scheme of TGI and vLLM)."""

    def __init__(self, tokenizer: Any, *, skip_special_tokens: bool) -> None:
        self._tok = tokenizer
        self._skip = skip_special_tokens
        self.ids: list[int] = []
        self._prefix = 0
        self._read = 0
        self.text = ""  # everything released so far

    def _decode(self, ids: Sequence[int]) -> str:
        return str(self._tok.decode(list(ids), skip_special_tokens=self._skip))

    def push(self, token_id: int) -> str:
        """Add one token; return the newly completed text (possibly empty)."""
        self.ids.append(int(token_id))
        prefix_text = self._decode(self.ids[self._prefix:self._read])
        new_text = self._decode(self.ids[self._prefix:])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            delta = new_text[len(prefix_text):]
            self._prefix, self._read = self._read, len(self.ids)
            self.text += delta
            return delta
        return ""

    def flush(self) -> str:
        """Release whatever is held back (an incomplete character decodes with a replacement mark)."""
        prefix_text = self._decode(self.ids[self._prefix:self._read])
        new_text = self._decode(self.ids[self._prefix:])
        delta = new_text[len(prefix_text):] if len(new_text) > len(prefix_text) else ""
        self._prefix = self._read = len(self.ids)
        self.text += delta
        return delta


class StopMatcher:
    """Find stop sequences in growing text and say how much of it is safe to show."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self._longest = max((len(s) for s in self.stops), default=0)

    def find(self, text: str, new_from: int) -> int | None:
        """Index of the earliest stop sequence that overlaps text[new_from:], or None."""
        if not self.stops:
            return None
        start = max(0, new_from - self._longest + 1)
        hits = [i for s in self.stops if (i := text.find(s, start)) >= 0]
        return min(hits) if hits else None

    def holdback(self, text: str) -> int:
        """How many trailing characters could be the start of a stop sequence (so must not be shown yet)."""
        best = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:k]):
                    best = k
                    break
        return best


def _byte_decoder() -> dict[str, int]:
    # GPT-2's reversible byte <-> printable-character map, used by byte-level BPE vocabularies.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


class TokenPieces:
    """Cached (string, bytes) of single tokens, for logprob fields."""

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
        self._byte_level = type(decoder).__name__ == "ByteLevel"
        self._bytes_map = _byte_decoder() if self._byte_level else {}
        self._cache: dict[int, tuple[str, list[int]]] = {}

    def get(self, token_id: int) -> tuple[str, list[int]]:
        hit = self._cache.get(token_id)
        if hit is not None:
            return hit
        raw: bytes | None = None
        if self._byte_level:
            symbol = self._tok.convert_ids_to_tokens(int(token_id))
            if isinstance(symbol, str) and all(ch in self._bytes_map for ch in symbol):
                raw = bytes(self._bytes_map[ch] for ch in symbol)
        if raw is None:
            raw = str(self._tok.decode([int(token_id)], skip_special_tokens=False)).encode("utf-8")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = "bytes:" + "".join(f"\\x{b:02x}" for b in raw)
        out = (text, list(raw))
        self._cache[token_id] = out
        return out


def text_with_offsets(tokenizer: Any, ids: Sequence[int]) -> tuple[str, list[int]]:
    """The text of token ids as they decode together (special tokens kept), and each token's character offset in it.
    The caller holds the tokenizer's lock if other threads use it."""
    dec = IncrementalDecoder(tokenizer, skip_special_tokens=False)
    offsets = []
    for t in ids:
        offsets.append(len(dec.text))
        dec.push(t)
    dec.flush()
    return dec.text, offsets
