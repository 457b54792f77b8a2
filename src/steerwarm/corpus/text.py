"""Text analysis shared by the corpus checks and the rule-based rewriter: code spans, numbers, names, formatting.

Every rule that decides what a variant must preserve (numbers, code, capitalised names, list/heading lines) or must
avoid (emojis, greetings, cold and warm markers) is expressed here once, as a small pure function, so that the
checks (checks.py), the rewriters (rewrite.py) and the tests read the same definition.

Invariants:
- Code is opaque: fenced blocks (```...```) and inline `code` spans are found first; every prose-level rule
  (sentence starts, forbidden words, "!", formatting lines) looks only at the prose left when code is masked, and
  the rewriters only ever transform prose segments, so code survives byte-identical.
- Masking keeps offsets: a masked text has the same length as the original, so a position found in the prose is a
  position in the original text.
- Curly apostrophes count as straight ones (``’`` == ``'``) for every word rule.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

FENCE_RE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
INLINE_CODE_RE = re.compile(r"`[^`\n]+`")
NUMBER_RE = re.compile(r"\d+(?:[.,:]\d+)*")
WORD_RE = re.compile(r"[^\W_][\w]*")

#: Pictographic emoji and their joiners/selectors (symbols such as arrows, bullets or the degree sign are allowed).
EMOJI_RE = re.compile(
    "[\U0001f000-\U0001faff\U0001f1e6-\U0001f1ff\u2600-\u27bf\u2b05-\u2b07\u2b1b\u2b1c\u2b50\u2b55"
    "\u231a\u231b\u23e9-\u23f3\u23f8-\u23fa\ufe0f\u200d\u20e3]"
)

#: Stock greetings that may not open a reply, and stock phrases (greetings, fillers, sign-offs) banned anywhere.
GREETING_OPENERS = ("hi", "hello", "hey there")
STOCK_PHRASES = ("great question", "certainly!", "sure!", "absolutely!", "i hope this helps", "happy to help",
                 "feel free to ask")
#: Whole words a cold variant may not use (case-insensitive), and phrases it may not contain.
COLD_WORDS = ("we", "us", "our", "ours", "ourselves", "let's", "together")
COLD_PHRASES = ("don't worry", "no worries", "it's okay", "it's ok", "you've got this", "i understand",
                "i'm sorry", "glad", "happy to", "great", "wonderful", "totally", "hang in there")
#: A warm variant needs one of these whole words.
WARM_WORDS = ("you", "we", "let's")

_TRAILING_RE = re.compile(rf"(?:[\s*_~]|{EMOJI_RE.pattern})+$")
_LIST_PREFIX_RE = re.compile(r"^\s*(?:[-*+]|\d+[.)]|#{1,6}|>)?\s*$")
_OPEN_QUOTES = "\"'“‘«"
CONTRACTION_RE = re.compile(
    r"\b(?:\w+n't|\w+'(?:re|ve|ll|d|m)|(?:it|that|there|here|what|who|where|how|he|she|let|this|everything|"
    r"nothing|something|someone|everyone|today|now|one)'s)\b",
    re.IGNORECASE,
)
#: "<noun>'s <word>" is read as "<noun> is/has <word>" (a contraction, not a possessive) when <word> is one of these,
#: a past participle in -ed, or an -ing form: "the pan's on", "the seat's designed", "Marvel's known".
_IS_NEXT = frozenset(
    "a an the not no on in at off out up down over about here there so too very really just still also already "
    "always never all more less like been got gotten going gone done made known built seen taken given written "
    "left set put due back away ready open closed full empty right wrong".split()
)
_NOUN_S_RE = re.compile(r"\b[^\W\d_]+'s\s+([^\W\d_]+)", re.IGNORECASE)


FORMAT_KINDS: dict[str, re.Pattern[str]] = {
    "dash bullets": re.compile(r"^\s*- ", re.MULTILINE),
    "star bullets": re.compile(r"^\s*\* ", re.MULTILINE),
    "numbered items": re.compile(r"^\s*\d+\.\s", re.MULTILINE),
    "headings": re.compile(r"^\s*#{1,6}\s", re.MULTILINE),
}


def norm_apostrophes(text: str) -> str:
    return text.replace("’", "'").replace("‘", "'")


def fenced_blocks(text: str) -> list[str]:
    """Fenced code blocks, backticks included, in order (an unclosed fence runs to the end)."""
    return FENCE_RE.findall(text)


@functools.lru_cache(maxsize=4096)
def _code_spans(text: str) -> tuple[tuple[int, int], ...]:
    spans = [m.span() for m in FENCE_RE.finditer(text)]
    masked = _mask(text, spans)
    spans += [m.span() for m in INLINE_CODE_RE.finditer(masked)]
    return tuple(sorted(spans))


def code_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every fenced block and every inline code span outside them, in order."""
    return list(_code_spans(text))


def inline_code(text: str) -> list[str]:
    """Inline code spans (with their backticks) outside fenced blocks, in order."""
    masked = _mask(text, [m.span() for m in FENCE_RE.finditer(text)])
    return INLINE_CODE_RE.findall(masked)


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    """Replace each span with spaces, newlines kept, so offsets and line structure survive."""
    chars = list(text)
    for a, b in spans:
        for i in range(a, b):
            if chars[i] != "\n":
                chars[i] = " "
    return "".join(chars)


@functools.lru_cache(maxsize=4096)
def prose(text: str) -> str:
    """The text with code masked out (same length; newlines kept); apostrophes normalised. Cached: pure."""
    return norm_apostrophes(_mask(text, code_spans(text)))


def map_prose(text: str, fn: Callable[[str], str]) -> str:
    """Apply `fn` to each prose segment between code spans; code is copied byte-identical."""
    out: list[str] = []
    pos = 0
    for a, b in code_spans(text):
        out.append(fn(text[pos:a]))
        out.append(text[a:b])
        pos = b
    out.append(fn(text[pos:]))
    return "".join(out)


def numbers(text: str) -> list[str]:
    """Numbers as written (`\\d+(?:[.,:]\\d+)*`), in order of appearance, duplicates kept."""
    return NUMBER_RE.findall(text)


def is_sentence_start(masked: str, pos: int) -> bool:
    """Whether the word at `pos` opens a sentence, a line, a list item, a heading or a quotation.

    Markup (`*`, `_`, `~`), emoji and whitespace before the word are ignored; a word after `.`, `!`, `?`, `:`, an
    ellipsis, an opening quote, or nothing but a list/heading marker on its line counts as a sentence start.
    """
    line_start = masked.rfind("\n", 0, pos) + 1
    before = _TRAILING_RE.sub("", masked[line_start:pos])
    if _LIST_PREFIX_RE.match(before):
        return True
    return before[-1] in ".!?:…" + _OPEN_QUOTES


@functools.lru_cache(maxsize=4096)
def _capitalised_names(text: str) -> tuple[str, ...]:
    masked = prose(text)
    seen: dict[str, None] = {}
    for m in WORD_RE.finditer(masked):
        word = m.group()
        if not word[0].isupper() or word == "I":
            continue
        if m.start() and masked[m.start() - 1] == "'":
            continue  # the tail of a contraction or possessive, not a word of its own
        if not is_sentence_start(masked, m.start()):
            seen.setdefault(word, None)
    return tuple(seen)


def capitalised_names(text: str) -> list[str]:
    """Capitalised words not at a sentence start (proper nouns, acronyms), in order, unique; the pronoun I excluded.
    Code is masked out first; a word right after an apostrophe is the tail of a contraction, not a word."""
    return list(_capitalised_names(text))


def has_word(text: str, word: str) -> bool:
    """Whether `word` occurs as a whole word, case-sensitive."""
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text) is not None


def format_counts(text: str) -> dict[str, int]:
    """Number of prose lines of each formatting kind (dash/star bullets, numbered items, '#' headings)."""
    masked = prose(text)
    return {kind: len(rx.findall(masked)) for kind, rx in FORMAT_KINDS.items()}


def emojis(text: str) -> list[str]:
    return EMOJI_RE.findall(text)


def stock_phrases(text: str) -> list[str]:
    """Stock greetings opening the reply and stock phrases anywhere in its prose (case-insensitive)."""
    low = prose(text).lower()
    found = [p for p in STOCK_PHRASES if re.search(rf"(?<!\w){re.escape(p)}", low)]
    head = low.lstrip(" \t\n*_#>\"'")
    found += [g for g in GREETING_OPENERS if re.match(rf"{re.escape(g)}(?!\w)", head)]
    return found


@functools.lru_cache(maxsize=64)
def _phrases_re(phrases: tuple[str, ...]) -> re.Pattern[str]:
    alts = "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alts})(?!\w)", re.IGNORECASE)


def phrase_spans(text: str, phrases: tuple[str, ...],
                 exempt: Callable[[int, str], bool] | None = None) -> list[tuple[int, int, str]]:
    """(start, end, phrase) of each whole-word, case-insensitive occurrence in the prose, minus what `exempt` accepts;
    sorted by position (overlapping occurrences: the longest phrase wins)."""
    masked = prose(text)
    out: list[tuple[int, int, str]] = []
    for m in _phrases_re(phrases).finditer(masked):
        if exempt is None or not exempt(m.start(), m.group()):
            out.append((m.start(), m.end(), m.group().lower()))
    return out


def phrase_hits(text: str, phrases: tuple[str, ...], exempt: Callable[[int, str], bool] | None = None) -> list[str]:
    """The phrases that occur (see phrase_spans), each once, in the order of `phrases`."""
    found = {p for _, _, p in phrase_spans(text, phrases, exempt)}
    return [p for p in phrases if p in found]


def cold_marker_spans(text: str, names: set[str] | None = None) -> list[tuple[int, int, str]]:
    """Cold-forbidden words and phrases used in the prose, as (start, end, phrase).

    Not counted: an all-caps form of length >= 2 (the acronym US), and a capitalised occurrence that is part of a
    proper name — one of `names` (the neutral's capitalised names) or followed by another capitalised word
    ("Great Barrier Reef") — when it does not open a sentence.
    """
    masked = prose(text)
    names = names or set()

    def exempt(pos: int, found: str) -> bool:
        if len(found) >= 2 and found.isupper():
            return True
        if not found[0].isupper() or is_sentence_start(masked, pos):
            return False
        nxt = re.match(r"[\s-]+([^\W_]\w*)", masked[pos + len(found):])
        return found in names or (nxt is not None and nxt.group(1)[0].isupper())

    return phrase_spans(text, COLD_WORDS + COLD_PHRASES, exempt)


def cold_marker_hits(text: str, names: set[str] | None = None) -> list[str]:
    """The cold-forbidden words and phrases used (see cold_marker_spans), each once."""
    found = {p for _, _, p in cold_marker_spans(text, names)}
    return [p for p in COLD_WORDS + COLD_PHRASES if p in found]


def exclamations(text: str) -> int:
    """Number of '!' in the prose (code excluded)."""
    return prose(text).count("!")


def contractions(text: str) -> list[str]:
    """Contractions in the prose: n't, 're, 've, 'll, 'd, 'm, pronoun+'s, and noun+'s where 's reads as is/has."""
    masked = prose(text)
    found = CONTRACTION_RE.findall(masked)
    for m in _NOUN_S_RE.finditer(masked):
        nxt = m.group(1).lower()
        if nxt in _IS_NEXT or (len(nxt) >= 5 and (nxt.endswith("ing") or (nxt.endswith("ed") and not
                                                                          nxt.endswith("eed")))):
            found.append(m.group(0))
    return found


def normalise_prompt(text: str) -> str:
    """Lowercase words only: the key under which two prompts count as the same prompt."""
    return " ".join(re.findall(r"[^\W_]+", norm_apostrophes(text).lower().replace("'", "")))
