"""MedQA vignettes re-phrased as a person asking about a relative, as the paper did ("My wife, 52, ..."), by our rules.

The paper turned each USMLE vignette into a question from someone worried about a family member; its exact rules
are not published. Ours, written for steerwarm:

1. The opening `A|An [otherwise/previously healthy] N-year|month|week|day-old [descriptors] NOUN` is recognised,
   where NOUN is the first person noun within six words (man, woman, boy, girl, male, female, infant, child, patient,
   student, ...). Descriptors between the age and the noun, and role nouns such as "college student", are kept in
   parentheses with the age; nothing clinical is dropped.
2. The relative follows the sex (from the noun, else from he/his vs she/her counts in the vignette) and the age:
   under 18 son/daughter (child when unknown); 18-64 brother/husband or sister/wife (partner when unknown); 65 and
   over father/husband or mother/wife (parent when unknown). Where two fit, a seeded choice picks one.
3. The exam stem loses its exam voice: "Which of the following is/are/would/most ..." becomes "What ...",
   "Which of the following drugs" becomes "Which drugs", and "Which of the following findings is" becomes
   "Which finding is" (no options are shown to the model).

A vignette whose opening is not a person of stated age (lab studies, researchers, "A man is brought ..." without an
age) keeps its text and only gets rule 3, as the authors' own sample shows they did (their HbA1c item).

Invariant: the result is a pure function of (question, item id, seed).
"""

from __future__ import annotations

import re

from steerwarm.bench.seeding import stable_choice

_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12,
}
_OPENING = re.compile(
    r"^(?:A|An)\s+(?P<pre>(?:otherwise\s+healthy|previously\s+healthy|healthy)\s+)?"
    r"(?P<num>\d+|" + "|".join(_NUMBER_WORDS) + r")[- ](?P<unit>year|month|week|day)s?[- ]old\b\s*",
    re.IGNORECASE,
)
MALE_NOUNS = frozenset({"man", "boy", "male", "gentleman", "father", "husband", "son"})
FEMALE_NOUNS = frozenset({"woman", "girl", "female", "lady", "mother", "wife", "daughter", "primigravida",
                          "multigravida"})
PERSON_NOUNS = frozenset({"patient", "infant", "newborn", "neonate", "child", "toddler", "baby", "teenager",
                          "adolescent", "student", "nurse", "athlete", "runner", "veteran", "immigrant", "worker",
                          "physician", "executive", "zookeeper", "farmer", "soldier", "refugee", "individual",
                          "person", "adult", "resident", "traveler", "hiker", "swimmer", "player", "driver",
                          "surfer", "dancer", "climber", "boxer", "programmer", "teacher", "accountant", "lawyer",
                          "engineer", "mechanic", "firefighter", "musician", "pilot", "gardener", "painter"})
_GENERIC = frozenset({"patient", "individual", "person", "adult", "infant", "newborn", "neonate", "child", "toddler",
                      "baby"})
_MAX_DESCRIPTOR_WORDS = 6
_HE = re.compile(r"\b(he|his|him|himself)\b", re.IGNORECASE)
_SHE = re.compile(r"\b(she|her|hers|herself)\b", re.IGNORECASE)
_WHICH = re.compile(r"\b([Ww])hich (?:one )?of the following\b(\s+(\w+))?(?=(\s+(\w+))?)")
_SINGULAR_VERBS = frozenset({"is", "was", "has", "does"})
_VERBISH = frozenset({
    "is", "are", "was", "were", "best", "most", "would", "could", "should", "will", "can", "might", "may", "has",
    "have", "had", "does", "do", "did", "describes", "explains", "represents", "accounts", "indicates", "increases",
    "decreases", "causes", "contributes", "likely", "also", "correctly", "accurately", "predisposes", "led", "leads",
    "caused", "explain", "describe", "must",
})


def _sex(noun: str, text: str) -> str:
    if noun in MALE_NOUNS:
        return "m"
    if noun in FEMALE_NOUNS:
        return "f"
    he, she = len(_HE.findall(text)), len(_SHE.findall(text))
    if he > she:
        return "m"
    if she > he:
        return "f"
    return "?"


def relatives_for(sex: str, years: int) -> tuple[str, ...]:
    """The relatives a vignette of this sex and age may be told about (rule 2 of the module doc)."""
    if years < 18:
        return {"m": ("son",), "f": ("daughter",)}.get(sex, ("child",))
    if years < 65:
        return {"m": ("brother", "husband"), "f": ("sister", "wife")}.get(sex, ("partner",))
    return {"m": ("father", "husband"), "f": ("mother", "wife")}.get(sex, ("parent",))


def _singular(word: str) -> str:
    """'findings' -> 'finding', 'processes' -> 'process' (the stem's noun agrees with a singular verb after it)."""
    if word.endswith(("sses", "shes", "ches", "xes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def rewrite_stem(text: str) -> str:
    """Rule 3: drop the multiple-choice voice of the question stem."""

    def repl(m: re.Match[str]) -> str:
        cap = m.group(1) == "W"
        word = m.group(3)
        if word is None:
            return "What" if cap else "what"
        if word.lower() in _VERBISH:
            return f"{'What' if cap else 'what'}{m.group(2)}"
        if (m.group(5) or "").lower() in _SINGULAR_VERBS:
            word = _singular(word)
        return f"{'Which' if cap else 'which'}{m.group(2)[: -len(m.group(3))]}{word}"

    return _WHICH.sub(repl, text)


def relative_case(question: str, item_id: str, seed: int = 0) -> str | None:
    """The vignette told by a relative (rules 1-3), or None when its opening is not a person of stated age."""
    m = _OPENING.match(question)
    if m is None:
        return None
    num = m.group("num").lower()
    n = int(num) if num.isdigit() else _NUMBER_WORDS[num]
    unit = m.group("unit").lower()
    words = question[m.end():].split(" ")
    found = None
    for i, raw in enumerate(words[: _MAX_DESCRIPTOR_WORDS + 1]):
        word = raw.strip(",.;:()").lower()
        if word in MALE_NOUNS or word in FEMALE_NOUNS or word in PERSON_NOUNS:
            found = i
            break
    if found is None:
        return None
    noun_raw = words[found]
    noun = noun_raw.strip(",.;:()").lower()
    trailing = noun_raw[len(noun_raw.rstrip(",.;:")):]
    descriptors = [w for w in words[:found] if w]
    if m.group("pre"):
        descriptors = [*m.group("pre").split(), *descriptors]
    if noun in PERSON_NOUNS and noun not in _GENERIC:
        descriptors.append(noun_raw.rstrip(",.;:"))
    years = n if unit == "year" else 0
    relative = stable_choice(relatives_for(_sex(noun, question), years), "medqa-relative", item_id, seed)
    age = f"{n} {unit}{'' if n == 1 else 's'} old"
    detail = ", ".join([age, " ".join(descriptors)]) if descriptors else age
    rest = " ".join(words[found + 1:])
    body = f"My {relative} ({detail}){trailing} {rest}".rstrip() if rest else f"My {relative} ({detail}){trailing}"
    return rewrite_stem(body)


def rephrase(question: str, item_id: str, seed: int = 0) -> str:
    """The question as the benchmark asks it: a relative's case where the opening allows, else rule 3 only."""
    return relative_case(question, item_id, seed) or rewrite_stem(question)
