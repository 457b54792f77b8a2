"""Automatic checks of the warmth corpus: per assistant turn (preservation and style rules) and per corpus (schema,
placement, quotas, unique ids, disjoint prompts, query types).

Turn rules (the rules the corpus writers and the rewriters get), for a turn's neutral / warm / cold variants:
  numbers       every number of neutral appears in warm and cold
  code_blocks   neutral's fenced code blocks appear byte-identical, in order, in warm and cold
  inline_code   neutral's inline `code` spans appear verbatim in warm and cold
  names         neutral's capitalised words that do not open a sentence (names, acronyms) appear in warm and cold
  formatting    same number of dash-bullet, star-bullet, numbered and heading lines
  length        len(warm) in [0.8, 1.6] x len(neutral); len(cold) in [0.5, 1.15] x len(neutral)
  emoji         no emoji in any variant
  stock_phrases no stock greeting opening a variant, no stock phrase/sign-off anywhere
  cold_words    cold uses none of we/us/our/ours/ourselves/let's/together and no reassurance or enthusiasm phrase
  cold_exclamation  cold has no "!" outside code
  warm_contraction  warm has at least one contraction
  warm_address  warm has at least one of you / we / let's

How the rules are read (text.py has the details):
- Word rules (names, cold words, "!", greetings, contractions, formatting lines) look at prose only: code is covered by
  code_blocks / inline_code and may contain anything.
- A sentence start is the start of a line (poem lines, list items after their marker, headings), or a word after
  . ! ? : … or an opening quote; "I" is a pronoun, not a name. Presence of a name is a whole-word, case-sensitive
  match anywhere in the variant.
- Cold words: all-caps "US" is the country, and a capitalised word inside a proper name ("Great Barrier Reef",
  or a capitalised name of the neutral) is not enthusiasm; "Hi"/"Hello"/"Hey there" count as greetings when they
  open the reply, the other stock phrases anywhere.
- Contractions: n't/'re/'ve/'ll/'d/'m, pronoun+'s, and noun+'s when the next word reads as after "is/has" ("the
  pan's on", "Marvel's known"); a possessive ("Rose's garden") is not a contraction.

Invariants:
- One definition: `check_variant` is what the corpus stats, the rewriters' validation and the tests all call; the
  text rules themselves live in text.py.
- A check never mutates data and never raises on bad data: problems come back as Violations that name the file and
  line (`source`), the conversation id, the assistant turn (0-based), the variant and the check.
- Violations marked `warning` are reported but do not fail the corpus (individual query-type disagreements: the
  check fails only when a type's agreement rate falls below MIN_AGREEMENT).
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from steerwarm.corpus import text as tx
from steerwarm.corpus.classify import classify
from steerwarm.corpus.schema import QUERY_TYPES, SPLITS, VARIANTS, AssistantTurn, Conversation, CorpusError, iter_jsonl

WARM_RATIO = (0.8, 1.6)
COLD_RATIO = (0.5, 1.15)
#: A query type fails the query_type check when fewer of its conversations than this agree with the classifier.
MIN_AGREEMENT = 0.9
#: Two prompts with at least this Jaccard overlap of their word sets are near-duplicates.
NEAR_DUPLICATE_JACCARD = 0.8

TURN_CHECKS: dict[str, str] = {
    "numbers": "every number of neutral appears in warm and cold",
    "code_blocks": "fenced code blocks of neutral byte-identical and in order in warm and cold",
    "inline_code": "inline code spans of neutral verbatim in warm and cold",
    "names": "capitalised words of neutral not at a sentence start appear in warm and cold",
    "formatting": "same number of bullet, numbered and heading lines",
    "length": f"warm/neutral chars in {list(WARM_RATIO)}, cold/neutral in {list(COLD_RATIO)}",
    "emoji": "no emoji in any variant",
    "stock_phrases": "no stock greeting or sign-off in any variant",
    "cold_words": "cold: no we/us/our/let's/together, no reassurance or enthusiasm phrases",
    "cold_exclamation": "cold: no '!' outside code",
    "warm_contraction": "warm: at least one contraction",
    "warm_address": "warm: at least one of you / we / let's",
}
CORPUS_CHECKS: dict[str, str] = {
    "schema": "every line parses into a valid conversation",
    "placement": "each conversation sits in {split}/{query_type}.jsonl",
    "unique_ids": "conversation ids are unique",
    "counts": "train: >= 70 per type and >= 420 in all; validation: >= 25 per type and >= 150 in all",
    "duplicate_prompts": "no two conversations share a first user message (normalised)",
    "near_duplicate_prompts": f"no train/validation prompt pair with word Jaccard >= {NEAR_DUPLICATE_JACCARD} "
                              "(exact duplicates: duplicate_prompts)",
    "query_type": f"per type, >= {MIN_AGREEMENT:.0%} of labels agree with the rule classifier",
}


@dataclass(frozen=True)
class Issue:
    """A broken turn rule in one variant."""

    check: str
    variant: str
    detail: str


@dataclass(frozen=True)
class Violation:
    check: str
    id: str
    detail: str
    source: str = ""
    turn: int | None = None
    variant: str | None = None
    warning: bool = False

    def __str__(self) -> str:
        where = self.source or "-"
        turn = f" turn {self.turn}" if self.turn is not None else ""
        var = f" {self.variant}" if self.variant else ""
        level = "warning" if self.warning else self.check
        return f"{where} {self.id or '-'}{turn}{var} [{level}] {self.detail}"


@dataclass
class CheckResult:
    name: str
    description: str
    checked: int
    violations: list[Violation] = field(default_factory=list)

    @property
    def errors(self) -> list[Violation]:
        return [v for v in self.violations if not v.warning]

    @property
    def failed(self) -> int:
        """Units (turns, conversations or quota items) with at least one error."""
        return len({(v.id, v.turn, v.detail if not v.id else "") for v in self.errors})

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class Quotas:
    train_per_type: int = 70
    train_total: int = 420
    validation_per_type: int = 25
    validation_total: int = 150


# --- turn rules ------------------------------------------------------------------------------------------------


def _missing(required: Iterable[str], present: Callable[[str], bool]) -> list[str]:
    return [r for r in required if not present(r)]


def _subsequence(needles: Sequence[str], hay: Sequence[str]) -> bool:
    it = iter(hay)
    return all(any(n == h for h in it) for n in needles)


def _short(items: Iterable[str], n: int = 4) -> str:
    items = list(items)
    shown = ", ".join(repr(i if len(i) <= 40 else i[:37] + "...") for i in items[:n])
    return shown + (f" (+{len(items) - n} more)" if len(items) > n else "")


def check_variant(neutral: str, text: str, variant: str) -> list[Issue]:
    """Every turn rule that concerns `text`, the `variant` ("neutral", "warm" or "cold") of `neutral`."""
    issues: list[Issue] = []

    def add(check: str, detail: str) -> None:
        issues.append(Issue(check, variant, detail))

    if found := tx.emojis(text):
        add("emoji", f"emoji {_short(found)}")
    if found := tx.stock_phrases(text):
        add("stock_phrases", f"stock phrase {_short(found)}")
    if variant == "neutral":
        return issues

    nums = set(tx.numbers(text))
    if miss := _missing(dict.fromkeys(tx.numbers(neutral)), nums.__contains__):
        add("numbers", f"missing number(s) {_short(miss)}")
    blocks = tx.fenced_blocks(neutral)
    if blocks and not _subsequence(blocks, tx.fenced_blocks(text)):
        lost = [b for b in blocks if b not in tx.fenced_blocks(text)]
        add("code_blocks", f"code block(s) changed or reordered {_short(lost or blocks, 2)}")
    if miss := _missing(dict.fromkeys(tx.inline_code(neutral)), text.__contains__):
        add("inline_code", f"missing inline code {_short(miss)}")
    if miss := _missing(tx.capitalised_names(neutral), lambda w: tx.has_word(text, w)):
        add("names", f"missing capitalised word(s) {_short(miss)}")
    want, got = tx.format_counts(neutral), tx.format_counts(text)
    if diff := [f"{k} {want[k]}->{got[k]}" for k in want if want[k] != got[k]]:
        add("formatting", "; ".join(diff))
    lo, hi = WARM_RATIO if variant == "warm" else COLD_RATIO
    ratio = len(text) / max(len(neutral), 1)
    if not lo <= ratio <= hi:
        add("length", f"{variant}/neutral = {ratio:.2f} chars ({len(text)}/{len(neutral)}), allowed [{lo}, {hi}]")

    if variant == "cold":
        if found := tx.cold_marker_hits(text, set(tx.capitalised_names(neutral))):
            add("cold_words", f"uses {_short(found)}")
        if n := tx.exclamations(text):
            add("cold_exclamation", f"{n} '!' outside code")
    elif variant == "warm":
        if not tx.contractions(text):
            add("warm_contraction", "no contraction")
        if not tx.phrase_hits(text, tx.WARM_WORDS):
            add("warm_address", "none of you / we / let's")
    return issues


def check_turn(turn: AssistantTurn) -> list[Issue]:
    """Every turn rule for all three variants of one assistant turn."""
    return [i for v in VARIANTS for i in check_variant(turn.neutral, turn.variant(v), v)]  # type: ignore[arg-type]


def check_conversation(conv: Conversation) -> list[Violation]:
    """Turn rules over every assistant turn of a conversation, as Violations that name file:line, id and turn."""
    return [Violation(i.check, conv.id, i.detail, conv.source, n, i.variant)
            for n, turn in enumerate(conv.assistant_turns) for i in check_turn(turn)]


# --- corpus rules ----------------------------------------------------------------------------------------------


@dataclass
class LoadedCorpus:
    """Conversations found under a folder or in files, with what could not be parsed or sits in the wrong place."""

    conversations: list[Conversation]
    schema_errors: list[CorpusError]
    placement: list[Violation]
    files: list[Path]


def load_dir(data_dir: str | Path) -> LoadedCorpus:
    """Every `*/*.jsonl` under data_dir (the layout `{split}/{query_type}.jsonl`), tolerant of bad lines."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise CorpusError(f"{data_dir}: no such corpus folder (expected {{split}}/{{query_type}}.jsonl files)")
    files = sorted(data_dir.glob("*/*.jsonl"))
    loaded = load_files(files, check_placement=True)
    for f in files:
        if f.parent.name not in SPLITS or f.stem not in QUERY_TYPES:
            loaded.placement.append(Violation("placement", "", f"unexpected file {f} (expected "
                                              f"{{split}}/{{query_type}}.jsonl)", str(f)))
    return loaded


def load_files(files: Sequence[str | Path], check_placement: bool = False) -> LoadedCorpus:
    out = LoadedCorpus([], [], [], [Path(f) for f in files])
    for f in out.files:
        for rec in iter_jsonl(f):
            if isinstance(rec, CorpusError):
                out.schema_errors.append(rec)
                continue
            out.conversations.append(rec)
            if check_placement and (rec.split, rec.query_type) != (f.parent.name, f.stem):
                out.placement.append(Violation(
                    "placement", rec.id, f"split/query_type {rec.split}/{rec.query_type} filed under "
                    f"{f.parent.name}/{f.stem}.jsonl", rec.source))
    return out


def predicted_type(conv: Conversation) -> str:
    """The rule classifier's query type for a conversation (first user message and first neutral reply)."""
    return classify(conv.first_user, conv.assistant_turns[0].neutral)


def _counts(convs: Sequence[Conversation], quotas: Quotas) -> CheckResult:
    res = CheckResult("counts", CORPUS_CHECKS["counts"], 0)
    per: Counter[tuple[str, str]] = Counter((c.split, c.query_type) for c in convs)
    limits = {"train": (quotas.train_per_type, quotas.train_total),
              "validation": (quotas.validation_per_type, quotas.validation_total)}
    for split, (per_type, total) in limits.items():
        for qt in QUERY_TYPES:
            res.checked += 1
            if per[split, qt] < per_type:
                res.violations.append(Violation("counts", "", f"{split}/{qt}: {per[split, qt]} conversations, "
                                                f"need >= {per_type}"))
        res.checked += 1
        n = sum(per[split, qt] for qt in QUERY_TYPES)
        if n < total:
            res.violations.append(Violation("counts", "", f"{split}: {n} conversations, need >= {total}"))
    return res


def _unique_ids(convs: Sequence[Conversation]) -> CheckResult:
    res = CheckResult("unique_ids", CORPUS_CHECKS["unique_ids"], len(convs))
    first: dict[str, Conversation] = {}
    for c in convs:
        if c.id in first:
            res.violations.append(Violation("unique_ids", c.id, f"id also used at {first[c.id].source}", c.source))
        else:
            first[c.id] = c
    return res


def _prompt_checks(convs: Sequence[Conversation]) -> list[CheckResult]:
    dup = CheckResult("duplicate_prompts", CORPUS_CHECKS["duplicate_prompts"], len(convs))
    near = CheckResult("near_duplicate_prompts", CORPUS_CHECKS["near_duplicate_prompts"], 0)
    by_key: dict[str, Conversation] = {}
    for c in convs:
        key = tx.normalise_prompt(c.first_user)
        if key in by_key:
            o = by_key[key]
            same = "identical" if o.first_user == c.first_user else "same after normalising"
            dup.violations.append(Violation("duplicate_prompts", c.id, f"first user message {same} as {o.id} "
                                            f"({o.split}, {o.source})", c.source))
        else:
            by_key[key] = c
    keyed = [(c, tx.normalise_prompt(c.first_user)) for c in convs]
    train = [(c, k, set(k.split())) for c, k in keyed if c.split == "train"]
    val = [(c, k, set(k.split())) for c, k in keyed if c.split == "validation"]
    for (v, vkey, a), (t, tkey, b) in itertools.product(val, train):
        near.checked += 1
        jac = len(a & b) / max(len(a | b), 1)
        if jac >= NEAR_DUPLICATE_JACCARD and vkey != tkey:
            near.violations.append(Violation("near_duplicate_prompts", v.id, f"prompt overlaps train {t.id} "
                                             f"(word Jaccard {jac:.2f}, {t.source})", v.source))
    return [dup, near]


def agreement(convs: Sequence[Conversation]) -> dict[str, tuple[int, int]]:
    """Per labelled query type: (conversations whose label the classifier reproduces, conversations)."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for c in convs:
        out[c.query_type][1] += 1
        out[c.query_type][0] += predicted_type(c) == c.query_type
    return {qt: (a, n) for qt, (a, n) in sorted(out.items(), key=lambda kv: QUERY_TYPES.index(kv[0]))}


def _query_types(convs: Sequence[Conversation]) -> CheckResult:
    res = CheckResult("query_type", CORPUS_CHECKS["query_type"], len(convs))
    for c in convs:
        if (p := predicted_type(c)) != c.query_type:
            res.violations.append(Violation("query_type", c.id, f"labelled {c.query_type}, classifier says {p}",
                                            c.source, warning=True))
    for qt, (a, n) in agreement(convs).items():
        if n and a / n < MIN_AGREEMENT:
            res.violations.append(Violation("query_type", "", f"{qt}: classifier agrees on {a}/{n} = {a / n:.0%}, "
                                            f"need >= {MIN_AGREEMENT:.0%}"))
    return res


def check_corpus(loaded: LoadedCorpus, quotas: Quotas | None = Quotas()) -> list[CheckResult]:
    """Every check over a loaded corpus, in a fixed order (corpus checks first, then turn checks).

    `quotas=None` skips the count quotas (for files that are not the whole corpus, e.g. a rewriter's output).
    """
    convs = loaded.conversations
    results = [
        CheckResult("schema", CORPUS_CHECKS["schema"], len(convs) + len(loaded.schema_errors),
                    [Violation("schema", "", str(e)) for e in loaded.schema_errors]),
        CheckResult("placement", CORPUS_CHECKS["placement"], len(convs), list(loaded.placement)),
        _unique_ids(convs),
    ]
    if quotas is not None:
        results.append(_counts(convs, quotas))
    results += _prompt_checks(convs)
    results.append(_query_types(convs))
    turns = sum(len(c.assistant_turns) for c in convs)
    by_check: dict[str, list[Violation]] = defaultdict(list)
    for c in convs:
        for v in check_conversation(c):
            by_check[v.check].append(v)
    results += [CheckResult(name, desc, turns, by_check[name]) for name, desc in TURN_CHECKS.items()]
    return results
