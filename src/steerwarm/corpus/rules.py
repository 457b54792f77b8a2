"""The `rules` rewriter: a deterministic, offline warm/cold style transfer. Weaker than an LLM rewriter by design.

Warm (`warm`): contract common verb forms in prose ("do not" -> "don't", "it is" -> "it's"), prepend an empathetic
opener chosen by simple cues from the user's message and the reply (grief, distress, good news, a refusal, a
technical, creative, advice or factual question, or small talk), and append a matching closing sentence when the
length budget allows. It never rewords the body, so it cannot tailor empathy to details the cues miss.

Cold (`cold`): in prose only, remove reassurance and enthusiasm (a sentence that carries nothing to preserve is
dropped; otherwise the phrase is cut or replaced: "great" -> "good", "we" -> "you", "our" -> "your", "together"
dropped), turn "!" into ".", cut framing ("Here are some ideas:" -> "Ideas:") and sentence-opening fillers ("Keep
in mind that", "In general,"), drop a few intensifiers (really, truly, ...), and expand contractions while the length
budget allows. It does not condense wording: on our corpus its cold variants are about as long as the neutral ones
(the authored cold ones are about 0.8 x), so it is colder mostly by omission of warmth.

Both first remove what no variant may keep: emojis, an opening greeting, stock phrases (strip_stock).

Invariants:
- Code is never touched (text.map_prose), numbers and capitalised names are never removed (a sentence carrying one
  is edited, not dropped), and list/heading lines are never added or removed, so the preservation checks hold by
  construction; the style checks are met in most but not all cases (the corpus rewrite reports the rate).
- Output depends only on the input: same context and reply, same rewrite (`deterministic = True`, so the runner does
  not retry a rules rewrite that fails the checks).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from steerwarm.corpus import text as tx
from steerwarm.corpus.checks import COLD_RATIO, WARM_RATIO
from steerwarm.corpus.classify import classify, is_refusal
from steerwarm.corpus.sources import Message

# (long form, contraction); the first group only before another word ("that is, ..." stays as it is).
_CONTRACT_BEFORE_WORD = [
    ("it is", "it's"), ("that is", "that's"), ("there is", "there's"), ("here is", "here's"),
    ("what is", "what's"), ("you are", "you're"), ("we are", "we're"), ("they are", "they're"), ("i am", "i'm"),
    ("i will", "i'll"), ("you will", "you'll"), ("we will", "we'll"), ("let us", "let's"),
]
_CONTRACT_ANYWHERE = [
    ("do not", "don't"), ("does not", "doesn't"), ("did not", "didn't"), ("is not", "isn't"), ("are not", "aren't"),
    ("was not", "wasn't"), ("were not", "weren't"), ("cannot", "can't"), ("can not", "can't"),
    ("will not", "won't"), ("would not", "wouldn't"), ("should not", "shouldn't"), ("could not", "couldn't"),
    ("have not", "haven't"), ("has not", "hasn't"),
]
_EXPAND = [
    ("can't", "cannot"), ("won't", "will not"), ("i'm", "i am"), ("it's", "it is"),
    ("that's", "that is"), ("there's", "there is"), ("here's", "here is"), ("what's", "what is"),
    ("who's", "who is"), ("he's", "he is"), ("she's", "she is"),
]
_EXPAND_SUFFIX = [("n't", " not"), ("'re", " are"), ("'ve", " have"), ("'ll", " will"), ("'d", " would")]
_INTENSIFIER_RE = re.compile(r"(?<=\w) (?:really|truly|definitely|absolutely|honestly|basically|actually|super|"
                             r"incredibly)(?= \w)", re.IGNORECASE)
_COLD_SWAP = {"great": "good", "wonderful": "good", "totally": "completely", "happy to": "able to",
              "we": "you", "us": "you", "our": "your", "ours": "yours", "ourselves": "yourselves", "together": "",
              "let's": ""}

_CUES: dict[str, tuple[str, ...]] = {
    "grief": ("died", "passed away", "passed last", "funeral", "grieving", "grief", "lost my", "losing my",
              "miscarriage", "put down", "put to sleep"),
    "distress": ("anxious", "anxiety", "nervous", "scared", "terrified", "afraid", "worried", "panic", "overwhelm",
                 "stressed", "exhausted", "burning out", "burnout", "burned out", "struggling", "crying",
                 "heartbroken", "lonely", "isolated", "failure", "failed", "embarrass", "guilty", "ashamed",
                 "frustrat", "miserable", "drowning", "hate my", "hurt", "sad", "depressed", "behind", "stuck",
                 "laid off", "broke up", "can't sleep", "upset", "angry", "feel stupid", "feel like a"),
    "good_news": ("got the job", "promoted", "promotion", "engaged", "got married", "graduat", "passed my",
                  "finally", "excited", "first steps", "i did it", "got in", "accepted", "new baby", "birthday",
                  "anniversary", "!"),
}

#: Longest first. Every opener has a contraction and a "you"/"we"/"let's" (the warm checks), which a test enforces.
_OPENERS: dict[str, tuple[str, ...]] = {
    "grief": ("I'm so sorry for your loss; that's a lot to carry, and you don't have to carry it alone.",
              "I'm so sorry; that's a heavy thing for you to go through.", "I'm so sorry you're going through this."),
    "distress": ("That sounds really hard, and it's completely understandable that you're feeling this way.",
                 "That sounds really hard, and it's okay that you feel this way.",
                 "That sounds hard, and you're not alone."),
    "good_news": ("That's lovely news, and you've every reason to feel proud of it.",
                  "That's lovely news, and you've earned it.", "That's lovely news, you've earned it."),
    "refusal": ("I can tell there's something real behind this, and I don't want to leave you stuck.",
                "I get why you're asking, and I don't want to leave you stuck.", "I hear you, and I'm with you."),
    "technical": ("You're asking exactly the right question, and it's simpler than it looks, so let's sort it out.",
                  "You're right to ask, and it's simpler than it looks.", "You're on the right track."),
    "creative": ("What a lovely thing to be working on; I've put this together with you in mind.",
                 "What a lovely idea; I've made this with you in mind.", "I'd love to help you with this."),
    "advice": ("That's a really fair thing to be weighing up, and you're already doing well by thinking it through.",
               "That's a fair thing to weigh up, and you're thinking it through well.", "You're asking the right "
               "question."),
    "factual": ("That's such an interesting thing to wonder about, so let's walk through it together.",
                "That's a lovely thing to be curious about, so let's look.", "Let's look at it together."),
    "other": ("I'm really glad you brought this up; it's a fun one to think about with you.",
              "I'm glad you brought this up; it's a fun one.", "I'm glad you asked."),
}
_CLOSERS: dict[str, tuple[str, ...]] = {
    "grief": ("Be gentle with yourself in the days ahead; you're doing the best you can.", "Be gentle with yourself."),
    "distress": ("Be kind to yourself along the way; you're doing better than you think.",
                 "You're doing better than you think."),
    "good_news": ("Enjoy every bit of this moment; you've earned it.", "Enjoy it, you've earned it."),
    "refusal": ("I hope you find a way through this that really works for you.", "I'm rooting for you."),
    "technical": ("You've got this, and it'll feel natural after you've tried it once or twice.", "You've got this."),
    "creative": ("I hope it brings a smile to whoever's lucky enough to read it.", "I hope you love it."),
    "advice": ("Whatever you decide, you're clearly putting real care into this, and that counts.",
               "You're putting real care into this."),
    "factual": ("It's a lovely example of how much there is to discover when you're curious.",
                "Isn't that neat?"),
    "other": ("I've really enjoyed thinking about this with you.", "I've enjoyed this with you."),
}


def _match_case(src: str, repl: str) -> str:
    if src[:1].isupper() and repl:
        return repl[0].upper() + repl[1:]
    return repl


def _sub_outside_names(pattern: str, repl: Callable[[str], str], text: str) -> str:
    """Case-insensitive substitution in prose only (curly apostrophes in prose become straight). A capitalised match
    that does not open a sentence is part of a name or title ("Don't Stop Believin'") and is kept; so is "I ...".
    """
    def one(segment: str) -> str:
        segment = tx.norm_apostrophes(segment)

        def fix(m: re.Match[str]) -> str:
            found = m.group()
            if found[0].isupper() and not re.match(r"I\b", found) and not tx.is_sentence_start(segment, m.start()):
                return found
            return repl(found)
        return re.sub(pattern, fix, segment, flags=re.IGNORECASE)
    return tx.map_prose(text, one)


def _replace_words(text: str, pairs: Sequence[tuple[str, str]], before_word: bool = False) -> str:
    """Whole-word, case-preserving replacements (see _sub_outside_names); one pass, longest form first."""
    table = {long: short for long, short in pairs}
    alts = "|".join(re.escape(long) for long in sorted(table, key=len, reverse=True))
    tail = r"(?=\s+[\w`])" if before_word else r"(?!\w)"
    return _sub_outside_names(rf"(?<![\w'])(?:{alts}){tail}",
                              lambda found: _match_case(found, table[found.lower()]), text)


def contract(text: str) -> str:
    """Common verb forms contracted in prose ("do not" -> "don't"; "it is" -> "it's" before another word)."""
    return _replace_words(_replace_words(text, _CONTRACT_ANYWHERE), _CONTRACT_BEFORE_WORD, before_word=True)


def expand(text: str) -> str:
    """Contractions expanded in prose ("don't" -> "do not", "it's" -> "it is")."""
    text = _replace_words(text, _EXPAND)
    suffixes = dict(_EXPAND_SUFFIX)
    # "why don't you" would become "why do not you": an inverted question keeps its contraction
    pattern = (rf"(?<![\w'])\w+(?:{'|'.join(re.escape(s) for s in suffixes)})(?!\w)"
               r"(?!\s+(?:you|i|we|they|he|she|it)\b)")

    def swap(found: str) -> str:
        short = next(s for s in suffixes if found.lower().endswith(s))
        return found[:-len(short)] + suffixes[short]
    return _sub_outside_names(pattern, swap, text)


def situation(prompt: str, reply: str) -> str:
    """The cue the opener and closer respond to: a feeling or news in the prompt first, else the query type."""
    low = tx.norm_apostrophes(prompt).lower()
    if is_refusal(reply):
        return "refusal"
    for cue in ("grief", "distress", "good_news"):
        if any(k in low for k in _CUES[cue]):
            return cue
    return classify(prompt, reply)


def _starts_block(text: str) -> bool:
    first = text.lstrip("\n").split("\n", 1)[0]
    return first.startswith("```") or bool(re.match(r"\s*(?:[-*+]\s|\d+[.)]\s|#{1,6}\s|>)", first))


def _ends_block(text: str) -> bool:
    last = text.rstrip().rsplit("\n", 1)[-1]
    return last.endswith("```") or bool(re.match(r"\s*(?:[-*+]\s|\d+[.)]\s|#{1,6}\s|>|\|)", last)) or (
        "\n" in text.rstrip() and not re.search(r"[.!?]\W*$", last))


def warm(neutral: str, prompt: str) -> str:
    """Warm rewrite of `neutral`, the reply to `prompt` (see module doc)."""
    body = contract(strip_stock(neutral))
    cue = situation(prompt, neutral)
    budget = WARM_RATIO[1] * 0.97 * len(neutral)
    glue_open = "\n\n" if _starts_block(body) or "\n\n" in body.strip() else " "
    glue_close = "\n\n" if _ends_block(body) or "\n\n" in body.strip() else " "
    for opener in _OPENERS[cue]:
        for closer in (*_CLOSERS[cue], ""):
            out = opener + glue_open + body.strip() + (glue_close + closer if closer else "")
            if len(out) <= budget:
                return out
    return _OPENERS[cue][-1] + glue_open + body.strip()


def _sentence(text: str, pos: int) -> tuple[int, int]:
    """(start, end) of the sentence around `pos`, within its line; end includes trailing spaces."""
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    line_end = len(text) if line_end < 0 else line_end
    start = line_start
    for m in re.finditer(r"[.!?…]+[\"')\]]*\s+", text[line_start:pos]):
        start = line_start + m.end()
    stop = re.search(r"[.!?…]+[\"')\]]*(?:\s+|$)", text[pos:line_end])
    end = pos + stop.end() if stop else line_end
    return start, end


def _protected(sentence: str, names: Sequence[str]) -> bool:
    return bool(tx.numbers(sentence) or "`" in sentence or any(tx.has_word(sentence, n) for n in names)
                or re.match(r"\s*(?:[-*+]\s|\d+[.)]\s|#)", sentence))


def _cut_phrase(text: str, start: int, end: int, phrase: str) -> str:
    """Remove or swap one forbidden phrase occurrence, tidying the punctuation around it."""
    repl = _COLD_SWAP.get(phrase, "")
    if phrase == "let's":  # "Let's compare them" -> "Compare them"
        nxt = re.match(r"\s+(\w)", text[end:])
        if nxt is not None:
            first = nxt.group(1).upper() if text[start].isupper() else nxt.group(1)
            return text[:start] + first + text[end + nxt.end():]
    if repl:
        return text[:start] + _match_case(text[start:end], repl) + text[end:]
    tail = re.match(r"[,;:]?\s*(?:but\s+)?", text[end:])
    cut_end = end + (tail.end() if tail else 0)
    rest = text[cut_end:]
    if text[start:end][:1].isupper() and rest[:1].islower():
        rest = rest[0].upper() + rest[1:]
    head = text[:start]
    if not rest[:1].isalnum() and head.endswith(" "):
        head = head.rstrip(" ")
    return head + rest


_GREETING_RE = re.compile(r"\A(\s*)(?:hi|hello|hey there)\b[^.!?,;:\n]{0,20}[.!?,;:]*[ \t]*", re.IGNORECASE)


def strip_stock(neutral: str) -> str:
    """The reply without emojis, an opening greeting, or stock phrases (a sentence that carries nothing to preserve
    is dropped with its phrase); source replies (ShareGPT) often have them, and no variant may keep them."""
    names = tx.capitalised_names(neutral)
    out = tx.map_prose(neutral, lambda s: re.sub(r" ?" + tx.EMOJI_RE.pattern + "+", "", s))
    for _ in range(50):
        spans = tx.phrase_spans(out, tx.STOCK_PHRASES)
        if not spans:
            break
        start, end, phrase = spans[0]
        s0, s1 = _sentence(out, start)
        if not _protected(out[s0:s1], names) and (out[:s0].strip() or out[s1:].strip()):
            out = out[:s0] + out[s1:]
        else:
            out = _cut_phrase(out, start, end, phrase)
    if (m := _GREETING_RE.match(out)) and out[m.end():].strip():
        rest = out[m.end():]
        out = m.group(1) + rest[0].upper() + rest[1:]
    return out.strip()


def cold(neutral: str) -> str:
    """Cold rewrite of `neutral` (see module doc)."""
    names = tx.capitalised_names(neutral)
    out = tx.map_prose(strip_stock(neutral), lambda s: re.sub(r"!+", ".", s).replace("?.", "?"))
    for _ in range(200):
        spans = tx.cold_marker_spans(out, set(names))
        if not spans:
            break
        start, end, phrase = spans[0]
        s0, s1 = _sentence(out, start)
        sentence = out[s0:s1]
        droppable = (phrase not in _COLD_SWAP and not _protected(sentence, names)
                     and re.search(r"[.!?…][\"')\]]*\s*$", sentence) is not None
                     and bool(out[:s0].strip() or out[s1:].strip()))
        out = out[:s0] + out[s1:] if droppable else _cut_phrase(out, start, end, phrase)
    out = tx.map_prose(out, _tidy)
    cap = COLD_RATIO[1] * 0.98 * len(neutral)
    expanded = expand(out)
    return (expanded if len(expanded) <= cap else out).strip()


_FILLER_RE = re.compile(
    r"(?:(?<=^)|(?<=[.!?:]\s)|(?<=\n))(?:it(?: i|')s worth (?:noting|remembering|mentioning) that|keep in mind that|"
    r"bear in mind that|remember that|note that|of course,|in general,|generally speaking,|simply put,|basically,|"
    r"to be honest,|honestly,|that said,|overall,|ultimately,|in fact,|as a matter of fact,) (\w)",
    re.IGNORECASE | re.MULTILINE)
_HERE_IS_RE = re.compile(r"^([ \t]*)Here(?: is|'s| are) (?:a few |a |an |some |the )?(\w)(?=[^\n]*:[ \t]*$)",
                         re.MULTILINE)


def _tidy(segment: str) -> str:
    """Framing cut ("Here are some names for X:" -> "Names for X:"), sentence-opening fillers ("Keep in mind
    that", "In general,") and intensifiers out, no spaces before punctuation
    or at line ends, at most one blank line."""
    segment = _HERE_IS_RE.sub(lambda m: m.group(1) + m.group(2).upper(), segment)
    segment = _FILLER_RE.sub(lambda m: m.group(1).upper(), segment)
    segment = _INTENSIFIER_RE.sub("", segment)
    segment = re.sub(r"(?<=\w) +([,.;:?])", r"\1", segment)
    segment = re.sub(r"[ \t]+(?=\n)", "", segment)
    return re.sub(r"\n{3,}", "\n\n", segment)


class RulesRewriter:
    """Backend interface of rewrite.py over `warm` and `cold`."""

    name = "rules"
    deterministic = True

    def rewrite(self, context: Sequence[Message], neutral: str, style: str,
                previous: str | None = None, problems: Sequence[str] = ()) -> str:
        prompt = next((m.content for m in reversed(context) if m.role == "user"), "")
        return warm(neutral, prompt) if style == "warm" else cold(neutral)
