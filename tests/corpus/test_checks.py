"""Turn checks catch crafted violations and pass a clean example; text rules (sentence starts, exemptions,
contractions); corpus checks (placement, ids, counts, duplicate and near-duplicate prompts, query types)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from steerwarm.corpus import text as tx
from steerwarm.corpus.checks import (
    TURN_CHECKS,
    LoadedCorpus,
    Quotas,
    check_corpus,
    check_turn,
    check_variant,
    load_dir,
)
from steerwarm.corpus.schema import AssistantTurn, parse_conversation

from .helpers import COLD, NEUTRAL, WARM, conversation, write_corpus


def test_clean_turn_passes_every_check() -> None:
    assert check_turn(AssistantTurn(NEUTRAL, WARM, COLD)) == []


NO_CONTRACTION_WARM = WARM.replace("You're", "You are").replace("we'll", "we will").replace(
    "you'll", "you will").replace("you've got", "you have got")
IMPERSONAL_WARM = (
    "Nearly there, and it will work out fine. To install Flask 3.0 on Ubuntu, run the command below:\n"
    "```bash\npip install flask==3.0.0\n```\n"
    "Then check it with `flask --version`. Two things to know:\n"
    "- It needs Python 3.8 or newer.\n"
    "- The docs live at the Pallets site.\n"
    "It takes about 2 minutes, and that's quick."
)

Case = tuple[str, Callable[[str], str], str]
CASES: list[Case] = [
    ("cold", lambda t: t.replace("2 minutes", "two minutes"), "numbers"),
    ("warm", lambda t: t.replace("3.8", "3.9"), "numbers"),
    ("warm", lambda t: t.replace("pip install", "pip3 install"), "code_blocks"),
    ("cold", lambda t: t.replace("```bash\npip install flask==3.0.0\n```\n", "pip install flask==3.0.0\n"),
     "code_blocks"),
    ("cold", lambda t: t.replace("`flask --version`", "flask --version"), "inline_code"),
    ("warm", lambda t: t.replace("Pallets", "pallets"), "names"),
    ("cold", lambda t: t.replace("on Ubuntu", "on it"), "names"),
    ("cold", lambda t: t.replace("- Docs: the Pallets site.", "- Docs: the Pallets site.\n- Free."), "formatting"),
    ("warm", lambda t: t.replace("- It needs", "It needs"), "formatting"),
    ("warm", lambda t: t + " Here is some extra chatter." * 12, "length"),
    ("cold", lambda t: t.replace("Verify with `flask --version`.", "Verify the install afterwards with the command "
                                 "`flask --version`, which prints the installed version of the framework.") + " "
     + "Pip resolves the dependencies." * 2, "length"),
    ("warm", lambda t: t + " 🎉", "emoji"),
    ("warm", lambda t: "Hello, " + t[0].lower() + t[1:], "stock_phrases"),
    ("cold", lambda t: t + " I hope this helps.", "stock_phrases"),
    ("cold", lambda t: t.replace("Install Flask", "We install Flask"), "cold_words"),
    ("cold", lambda t: t.replace("Requirements:", "Don't worry, requirements:"), "cold_words"),
    ("cold", lambda t: t.replace("Requirements:", "Great, requirements:"), "cold_words"),
    ("cold", lambda t: t.replace("Install Flask", "Let’s install Flask"), "cold_words"),
    ("cold", lambda t: t.replace("2 minutes.", "2 minutes!"), "cold_exclamation"),
    ("warm", lambda t: NO_CONTRACTION_WARM, "warm_contraction"),
    ("warm", lambda t: IMPERSONAL_WARM, "warm_address"),
]


@pytest.mark.parametrize(("variant", "mutate", "check"), CASES,
                         ids=[f"{c[2]}-{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_check_catches_a_crafted_violation(variant: str, mutate: Callable[[str], str], check: str) -> None:
    text = mutate(WARM if variant == "warm" else COLD)
    issues = check_variant(NEUTRAL, text, variant)
    assert {i.check for i in issues} == {check}, issues
    assert all(i.variant == variant for i in issues)


def test_every_turn_check_has_a_case() -> None:
    assert {c[2] for c in CASES} == set(TURN_CHECKS)


def test_neutral_is_checked_for_emoji_and_stock_phrases_only() -> None:
    issues = check_variant(NEUTRAL, "Great question! 😀 " + NEUTRAL, "neutral")
    assert {i.check for i in issues} == {"emoji", "stock_phrases"}


def test_violation_details_are_specific() -> None:
    (issue,) = check_variant(NEUTRAL, COLD.replace("Pallets", "project"), "cold")
    assert issue.detail == "missing capitalised word(s) 'Pallets'"
    (issue,) = check_variant(NEUTRAL, COLD.replace("2 minutes", "a moment"), "cold")
    assert issue.detail == "missing number(s) '2'"


def test_sentence_starts_are_not_names() -> None:
    poem = "Roses are red,\nViolets are blue,\nAnd Rose loves Paris too."
    assert tx.capitalised_names(poem) == ["Rose", "Paris"]
    assert tx.capitalised_names('Note: Python is fine. She said "Hello there" to NASA (NASA). I agree.') == ["NASA"]
    assert tx.capitalised_names("- Paris is big\n1. Berlin too\n## Rome\n**Madrid** and Lisbon") == ["Lisbon"]
    assert tx.capitalised_names("Use `Path` here, Bob; the ```\nCode Block\n``` stays.") == ["Bob"]
    # names are found whole-word and case-sensitively in a variant
    assert tx.has_word("Talk to Jess's parents", "Jess") and not tx.has_word("Jessica came", "Jess")


def test_cold_exemptions_for_names_and_acronyms() -> None:
    assert tx.cold_marker_hits("The US economy grew.") == []
    assert tx.cold_marker_hits("It lies off the Great Barrier Reef.") == []
    assert tx.cold_marker_hits("It sank in the Great Lakes.", names={"Great"}) == []
    assert tx.cold_marker_hits("Great. It sank.") == ["great"]
    assert tx.cold_marker_hits("That is great.") == ["great"]
    assert tx.cold_marker_hits("Tell us more.") == ["us"]
    assert tx.cold_marker_hits("It's okay to rest.") == ["it's okay"]
    assert tx.cold_marker_hits("It's okey and greatly improved; usually fine.") == []
    assert tx.cold_marker_hits("Code `we = our()` is fine.") == []
    assert tx.exclamations("Run `!ls` then ```\nprint('hi!')\n``` done.") == 0


def test_contractions() -> None:
    assert tx.contractions("It's fine, you're right, we'll see, I'd go, don't.") == [
        "It's", "you're", "we'll", "I'd", "don't"]
    assert tx.contractions("The pan’s on and the seat's designed to recline; Marvel's known for it.") == [
        "pan's on", "seat's designed", "Marvel's known"]
    assert tx.contractions("Rose's garden and the dog's favourite toy.") == []


def test_format_counts_ignore_code() -> None:
    text = "# Title\n- a\n* b\n1. c\n2. d\n```\n# comment\n- not a bullet\n```"
    assert tx.format_counts(text) == {"dash bullets": 1, "star bullets": 1, "numbered items": 2, "headings": 1}


def test_masking_keeps_offsets() -> None:
    text = "a `b` c\n```\nx\n```\nd"
    assert len(tx.prose(text)) == len(text)
    assert tx.map_prose(text, str.upper) == "A `b` C\n```\nx\n```\nD"


# --- corpus checks -------------------------------------------------------------------------------------------


def _results(loaded: LoadedCorpus, quotas: Quotas | None = None) -> dict[str, list[str]]:
    return {r.name: [str(v) for v in r.errors] for r in check_corpus(loaded, quotas)}


def test_small_clean_corpus_passes(tmp_path: Path) -> None:
    loaded = load_dir(write_corpus(tmp_path, {"train": 3, "validation": 2}))
    res = check_corpus(loaded, Quotas(3, 18, 2, 12))
    assert [r.name for r in res if not r.ok] == []
    assert {r.name: r.checked for r in res}["numbers"] == 30


def test_counts_quotas(tmp_path: Path) -> None:
    loaded = load_dir(write_corpus(tmp_path, {"train": 3, "validation": 2}))
    errors = _results(loaded, Quotas(4, 18, 2, 13))["counts"]
    assert len(errors) == 7
    assert "train/refusal: 3 conversations, need >= 4" in errors[0]
    assert errors[-1].endswith("validation: 12 conversations, need >= 13")


def test_placement_ids_and_duplicates(tmp_path: Path) -> None:
    root = write_corpus(tmp_path, {"train": 2, "validation": 1})
    with (root / "train" / "factual.jsonl").open("a") as fh:
        fh.write(json.dumps(conversation("advice-train-000", "advice", "train",
                                         prompt="Why is the SKY blue??")) + "\n")
    (root / "train" / "misc.jsonl").write_text("")
    res = _results(load_dir(root))
    assert len(res["placement"]) == 2
    assert "advice-train-000 [placement] split/query_type train/advice filed under train/factual.jsonl" in \
        res["placement"][0]
    assert "unexpected file" in res["placement"][1]
    assert len(res["unique_ids"]) == 1 and "factual.jsonl:3 advice-train-000" in res["unique_ids"][0]
    assert res["duplicate_prompts"] == [] and res["near_duplicate_prompts"] == []

    # the same prompt, modulo case and punctuation, in validation: a duplicate across splits
    with (root / "validation" / "factual.jsonl").open("a") as fh:
        fh.write(json.dumps(conversation("dup", "factual", "validation", prompt="why is the sky blue")) + "\n")
        fh.write(json.dumps(conversation("near", "factual", "validation",
                                         prompt="Why is the sky so blue?")) + "\n")
    (root / "train" / "misc.jsonl").unlink()
    with (root / "train" / "factual.jsonl").open("a") as fh:
        fh.write(json.dumps(conversation("base", "factual", "train", prompt="Why is the sky blue?")) + "\n")
    res = _results(load_dir(root))
    assert len(res["duplicate_prompts"]) == 2
    assert any("dup [duplicate_prompts] first user message same after normalising" in v
               for v in res["duplicate_prompts"])
    assert len(res["near_duplicate_prompts"]) == 2  # "near" overlaps both train prompts about the sky
    assert all("near [near_duplicate_prompts]" in v for v in res["near_duplicate_prompts"])


def test_query_type_disagreement_is_a_warning_until_the_rate_drops(tmp_path: Path) -> None:
    convs = [parse_conversation(conversation(f"f{i}", "factual", "train", prompt=f"Why is {i} odd?"), "x")
             for i in range(10)]
    convs.append(parse_conversation(conversation("f10", "factual", "train", prompt="Cats or dogs?"), "x"))
    (res,) = [r for r in check_corpus(LoadedCorpus(convs, [], [], []), None) if r.name == "query_type"]
    assert res.ok and len(res.violations) == 1 and res.violations[0].warning
    convs.append(parse_conversation(conversation("f11", "factual", "train", prompt="Tea or coffee?"), "x"))
    (res,) = [r for r in check_corpus(LoadedCorpus(convs, [], [], []), None) if r.name == "query_type"]
    assert not res.ok
    assert [str(v) for v in res.errors] == ["- - [query_type] factual: classifier agrees on 10/12 = 83%, need >= 90%"]


def test_schema_errors_become_violations(tmp_path: Path) -> None:
    root = write_corpus(tmp_path, {"train": 1})
    with (root / "train" / "other.jsonl").open("a") as fh:
        fh.write('{"id": "broken"}\n')
    (res,) = [r for r in check_corpus(load_dir(root), None) if r.name == "schema"]
    assert res.failed == 1 and "other.jsonl:2: field 'query_type'" in res.errors[0].detail
