"""Rule-based query types, in the spirit of the paper's simple rules (refusal, factual, creative, technical, advice,
other).

The rules, tried in this order; the first that fires decides:
1. refusal   — one of the first two sentences of the assistant's neutral reply (quotations removed) opens by
               declining: "I can't/cannot/won't help",
               "I'm not able to", "I must decline", "as an AI" ... (needs the reply; a bare prompt never is a refusal).
2. technical — the prompt carries code (backticks) or a programming/IT cue (a language, tool, error name, SQL,
               regex, Excel formula ...), or the reply contains a fenced code block.
3. creative  — a creative deliverable is asked for: a creation verb (write, compose, come up with, brainstorm ...)
               with a creative form (poem, haiku, story, slogan, toast, names ...), or brainstorm/come up with alone.
4. advice    — the user asks what to do: "should I", "how can/do/should I", "what should I", "tips", "advice",
               "is it a good idea", "what do you recommend" ...
5. factual   — a sentence of the prompt is a wh-question (what/why/how/when/who/where/which ...?), or it asks to
               explain / tell about something; a question about the assistant itself ("which do you like",
               "how's your day") is small talk, not a factual query.
6. other     — everything else (chit-chat, opinions, role-play, news shared, small tasks).

Invariants: deterministic, pure, and always one of schema.QUERY_TYPES. The rules are deliberately few and readable;
agreement with the authored labels is measured (`steerwarm corpus stats`), not forced.
"""

from __future__ import annotations

import re

from steerwarm.corpus.text import norm_apostrophes

_REFUSAL_RE = re.compile(
    r"^(?:(?:i'm sorry|sorry|unfortunately|no),?\s+(?:but\s+)?)?"
    r"(?:i can't|i cannot|i can not|i won't|i will not|i'm not able to|i am not able to|i'm unable to|i am unable to|"
    r"i must decline|i'm not going to|i am not going to|i'd rather not|i have to decline|"
    r"as an ai)\b"
)
_TECH_RE = re.compile(
    r"`|\bc\+\+|\bc#|\b(?:python|javascript|typescript|golang|kotlin|php|perl|html|css|sql|mysql|postgres(?:ql)?|"
    r"sqlite|bash|zsh|powershell|shell (?:script|command)|terminal|command line|linux|ubuntu|macos|unix|git|github|"
    r"docker|dockerfile|kubernetes|regex|regular expression|api|rest api|json|csv|yaml|xml|excel|spreadsheet|"
    r"formula|vlookup|pandas|numpy|dataframe|compile|compiler|gcc|npm|pip|cron|ssh|subnet|ip address|dns|http|"
    r"https|localhost|port \d+|server|database|(?:my|this|the|your|some) code|coding|programming|debug|"
    r"stack trace|\w+error|exception|segfault|variable|array|recursion|algorithm|big o|o\(n|o\(log|async|await|"
    r"decorator|object-oriented|framework)\b"
)
_CREATIVE_VERB = r"(?:write|compose|draft|pen|create|make up|invent|come up with|brainstorm|give me|need)"
_CREATIVE_FORM = (
    r"(?:poem|poems|poetry|haiku|limerick|sonnet|verse|ode|acrostic|rhyme|story|stories|fable|tale|novel|"
    r"song|lyrics|chorus|jingle|rap|riddle|tongue twister|slogan|slogans|tagline|taglines|toast|speech|"
    r"names?|name ideas|captions?|product description|dialogue|monologue|opening (?:lines?|paragraph)|"
    r"message|note|letter|email|card|plot twists?|costume ideas|ideas|retelling|shanty|parody)"
)
_CREATIVE_RE = re.compile(
    rf"\b{_CREATIVE_VERB}\b[^.?!]*?\b{_CREATIVE_FORM}\b|\b(?:brainstorm|come up with)\b"
)
_ADVICE_RE = re.compile(
    r"\b(?:should i|should we|shall i|how can i|how can we|how do i|how do we|how should i|how should we|"
    r"what should i|what should we|what can i do|what do i do|what do you recommend|what would you recommend|"
    r"would you recommend|do you recommend|any tips|tips|advice|is it a good idea|is it worth|is it too late|"
    r"is it realistic|where should i|where do i start|help me decide|how do i deal|how to)\b"
)
_FACTUAL_RE = re.compile(
    r"(?:^|[.!?]\s+)(?:what|what's|why|how(?!'s)|when|who|whom|whose|where|which)\b[^.!?]*\?|"
    r"\b(?:explain|tell me about|describe how|what is|what are)\b"
)
_ABOUT_ASSISTANT_RE = re.compile(r"\b(?:do you|would you|are you|have you|you like|your favou?rite|your day)\b")


def is_refusal(reply: str) -> bool:
    """Whether one of the reply's first two sentences (quotations removed) opens by declining."""
    text = re.sub(r"\"[^\"]*\"|“[^”]*”", " ", norm_apostrophes(reply)).strip().lower()
    return any(_REFUSAL_RE.match(s) for s in re.split(r"(?<=[.!?])\s+", text)[:2])


def classify(prompt: str, reply: str | None = None) -> str:
    """Query type of a conversation from its first user message (and the assistant's first neutral reply)."""
    low = norm_apostrophes(prompt).lower()
    if reply is not None and is_refusal(reply):
        return "refusal"
    if _TECH_RE.search(low) or (reply is not None and "```" in reply):
        return "technical"
    if _CREATIVE_RE.search(low):
        return "creative"
    if _ADVICE_RE.search(low):
        return "advice"
    if _FACTUAL_RE.search(low) and not _ABOUT_ASSISTANT_RE.search(low):
        return "factual"
    return "other"
