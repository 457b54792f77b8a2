"""`steerwarm corpus rewrite`: the openai backend against a fake OpenAI-compatible endpoint over real HTTP
(transient errors retried with backoff, failed checks retried with feedback then recorded, resume after the endpoint
dies, torn lines), ShareGPT input through the CLI, and the rules backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from steerwarm.cli.app import app
from steerwarm.corpus import text as tx
from steerwarm.corpus.checks import check_corpus, check_turn, load_files
from steerwarm.corpus.prompts import REPLY_CLOSE, REPLY_OPEN, STYLE_LINE
from steerwarm.corpus.rewrite import EndpointError, OpenAIRewriter, failures_path, run_rewrite
from steerwarm.corpus.rules import _OPENERS, RulesRewriter, cold, contract, expand, strip_stock, warm
from steerwarm.corpus.schema import AssistantTurn, read_jsonl
from steerwarm.corpus.sources import Message, SourceConversation, read_sources
from steerwarm.paths import corpus_data
from steerwarm.records import read_records
from tests.killing import run_snippet, torn

from .fake_openai import Script, serve
from .helpers import NEUTRAL, PROMPTS, PROSE, conversation

MULTI = {"id": "multi", "messages": [
    {"role": "user", "content": "I failed my driving test today and feel awful. Why do so many people fail?"},
    {"role": "assistant", "content": "About 50% of candidates in the UK fail their first practical test. The most "
                                     "common faults are poor observation at junctions and mirror use."},
    {"role": "user", "content": "How long should I wait before retaking it?"},
    {"role": "assistant", "content": "You can book a retest after 10 working days. Most people take 2 or 3 more "
                                     "lessons first to work on the faults listed on their report."},
]}


def _input(tmp_path: Path, n: int = 4) -> Path:
    convs = [conversation(f"c{i}", qt, "train", prompt=f"{PROMPTS[qt]} Case {i}.")
             for i, qt in zip(range(n), ["factual", "technical", "advice", "creative", "other", "factual"] * 3,
                              strict=False)]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in [*convs, MULTI]))
    return path


def _rewriter(url: str, sleeps: list[float] | None = None, **kw: float) -> OpenAIRewriter:
    return OpenAIRewriter(url, "fake-model", "sk-test", backoff=0.001, sleep=(sleeps.append if sleeps is not None
                                                                               else lambda s: None), **kw)


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()]


def test_openai_backend_end_to_end_with_transient_errors(tmp_path: Path) -> None:
    src = read_sources(_input(tmp_path)).conversations
    script = Script(errors=[500, 429, 503])
    sleeps: list[float] = []
    out = tmp_path / "out.jsonl"
    with serve(script) as url:
        rw = _rewriter(url, sleeps)
        report = run_rewrite(src, rw, out, concurrency=1)
    assert report.done == 5 and report.failed == 0
    assert len(sleeps) == 3 and sleeps[1] >= 0.0  # two 5xx and one 429 (Retry-After: 0), each retried
    assert sleeps[0] < sleeps[1] * 4 + 0.01  # exponential: 0.001, 0.002 ... x jitter
    # 2 styles x (4 single-turn + 2 turns of MULTI) rewrites, plus the 3 refused requests
    assert script.calls == rw.calls == 2 * 6 + 3
    convs = list(read_jsonl(out))
    assert [c.id for c in convs] == ["c0", "c1", "c2", "c3", "multi"]
    assert [c.query_type for c in convs] == ["factual", "technical", "advice", "creative", "factual"]
    assert all(c.split == "train" for c in convs)
    assert all(check_turn(t) == [] for c in convs for t in c.assistant_turns)
    multi = convs[-1]
    assert [t.neutral for t in multi.assistant_turns] == [MULTI["messages"][1]["content"],  # type: ignore[index]
                                                          MULTI["messages"][3]["content"]]  # type: ignore[index]
    # our instruction text went over the wire: style line, rules, the reply between tags, the context
    req = script.requests[-1]
    system, user = req["messages"][0]["content"], req["messages"][1]["content"]
    assert req["model"] == "fake-model" and system.split("\n")[0] in STYLE_LINE.values()
    assert "every number exactly as written" in system and "Never use emojis" in system
    assert f"{REPLY_OPEN}\n{MULTI['messages'][3]['content']}\n{REPLY_CLOSE}" in user  # type: ignore[index]
    assert "How long should I wait" in user and "[assistant]\nAbout 50%" in user


def test_failed_checks_are_retried_with_feedback(tmp_path: Path) -> None:
    src = read_sources(_input(tmp_path, 1)).conversations[:1]
    script = Script(spoil_first={"Lord Rayleigh"})
    with serve(script) as url:
        report = run_rewrite(src, _rewriter(url), tmp_path / "out.jsonl")
    assert report.done == 1 and report.variants == 2 and report.first_pass == 0 and report.calls == 4
    assert report.problems == {"emoji": 2}
    retry = script.requests[1]["messages"]
    assert len(retry) == 4 and retry[2]["role"] == "assistant" and retry[2]["content"].endswith("🙂")
    assert "emoji: emoji '🙂'" in retry[3]["content"]
    (conv,) = read_jsonl(tmp_path / "out.jsonl")
    assert "🙂" not in conv.assistant_turns[0].warm


def test_rewrites_that_keep_failing_are_recorded_never_kept(tmp_path: Path) -> None:
    src = read_sources(_input(tmp_path, 2)).conversations[:2]
    out = tmp_path / "out.jsonl"
    with serve(Script(spoil_always={"Flask"})) as url:
        report = run_rewrite(src, _rewriter(url), out, max_attempts=2)
    assert (report.done, report.failed) == (1, 1)
    assert _ids(out) == ["c0"]
    (fail,) = [json.loads(x) for x in failures_path(out).read_text().splitlines()]
    assert fail["id"] == "c1" and fail["turn"] == 0 and fail["style"] == "warm" and fail["attempts"] == 2
    assert fail["problems"] == ["emoji: emoji '🙂'"] and fail["last"].endswith("🙂")

    with serve(Script()) as url:  # a rerun skips what failed before ...
        again = run_rewrite(src, _rewriter(url), out)
        assert (again.already_done, again.previously_failed, again.calls) == (1, 1, 0)
        healed = run_rewrite(src, _rewriter(url), out, retry_failed=True)  # ... unless asked to retry it
    assert healed.done == 1 and _ids(out) == ["c0", "c1"]
    assert failures_path(out).read_text() == ""


@pytest.mark.parametrize("concurrency", [1, 3])
def test_resume_after_the_endpoint_dies(tmp_path: Path, concurrency: int) -> None:
    src = read_sources(_input(tmp_path, 12)).conversations  # 12 single-turn + MULTI: 28 rewrites
    out = tmp_path / "out.jsonl"
    with serve(Script(fail_after=9)) as url, pytest.raises(EndpointError, match="rerun to resume") as exc:
        run_rewrite(src, _rewriter(url, max_retries=2), out, concurrency=concurrency)
    first = _ids(out)
    assert exc.value.report is not None and exc.value.report.done == len(first)
    assert 1 <= len(first) <= 4 and not failures_path(out).read_text()
    script = Script()
    with serve(script) as url:
        report = run_rewrite(src, _rewriter(url), out, concurrency=concurrency)
    ids = _ids(out)
    assert sorted(ids) == sorted(c.id for c in src) and len(ids) == len(set(ids)) == 13
    assert report.already_done == len(first) and report.done == 13 - len(first)
    assert script.calls == 2 * (13 + 1) - 2 * len(first) - 2 * ("multi" in first)


def test_a_torn_last_line_is_cut_and_redone(tmp_path: Path) -> None:
    src = read_sources(_input(tmp_path, 2)).conversations[:2]
    out = tmp_path / "out.jsonl"
    run_rewrite(src[:1], RulesRewriter(), out)
    whole = out.read_text()
    out.write_text(whole + '{"id": "c1", "query_type": "tech')
    report = run_rewrite(src, RulesRewriter(), out)
    assert report.already_done == 1 and report.done == 1
    assert out.read_text().startswith(whole) and _ids(out) == ["c0", "c1"]
    out.write_text(out.read_text().rstrip("\n"))  # a complete last line without its newline is kept
    assert run_rewrite(src, RulesRewriter(), out).already_done == 2 and _ids(out) == ["c0", "c1"]


KILL_SCRIPT = """
import sys
from steerwarm.corpus.rewrite import run_rewrite
from steerwarm.corpus.rules import RulesRewriter
from steerwarm.corpus.sources import read_sources
run_rewrite(read_sources(sys.argv[1]).conversations, RulesRewriter(), sys.argv[2], concurrency=1)
"""


def test_resume_after_a_kill_mid_write(tmp_path: Path) -> None:
    src = read_sources(_input(tmp_path, 6)).conversations  # 6 single-turn + MULTI
    out = tmp_path / "out.jsonl"
    run_snippet(KILL_SCRIPT, str(tmp_path / "in.jsonl"), str(out), kill_after=4)  # dies writing the 4th record
    files = (out, failures_path(out))
    assert sum(torn(f) for f in files) == 1 and sum(len(read_records(f)) for f in files) == 3
    report = run_rewrite(src, RulesRewriter(), out)
    assert report.already_done + report.previously_failed == 3 and report.done + report.failed == len(src) - 3
    ids = [i for f in files for i in _ids(f)]
    assert sorted(ids) == sorted(c.id for c in src)  # every conversation once, in OUT or in the failures file
    assert not any(torn(f) for f in files)


def test_a_refused_request_stops_at_once(tmp_path: Path) -> None:
    src = read_sources(_input(tmp_path, 1)).conversations[:1]
    script = Script(errors=[401])
    with serve(script) as url, pytest.raises(EndpointError, match="HTTP 401"):
        run_rewrite(src, _rewriter(url), tmp_path / "out.jsonl")
    assert script.calls == 1


def test_cli_rewrites_sharegpt_with_the_openai_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sharegpt = [
        {"id": "sg-1", "conversations": [{"from": "human", "value": "Why is the sky blue?"},
                                         {"from": "gpt", "value": PROSE[0]}]},
        {"id": "sg-2", "conversations": [{"from": "human", "value": "How do I install Flask on Ubuntu?"},
                                         {"from": "gpt", "value": NEUTRAL}]},
        {"id": "sg-3", "conversations": [{"from": "human", "value": "Ping?"}]},
    ]
    src = tmp_path / "sharegpt.json"
    src.write_text(json.dumps(sharegpt))
    out = tmp_path / "out.jsonl"
    runner = CliRunner()
    with serve(Script()) as url:
        args = ["corpus", "rewrite", str(src), "--out", str(out), "--backend", "openai", "--base-url", url,
                "--model", "fake-model", "--api-key-env", "STEERWARM_TEST_KEY", "--concurrency", "2"]
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and "STEERWARM_TEST_KEY is not set" in res.output
        monkeypatch.setenv("STEERWARM_TEST_KEY", "sk-test")
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
        assert "skipped" in res.output and "sg-3" in res.output
        assert "2 rewritten now, 0 failed now" in res.output and "conversation pass rate 100.0%" in res.output
        res = runner.invoke(app, args)  # resume: nothing left to do
        assert "0 rewritten now" in res.output and "2 already in" in res.output
    assert sorted(_ids(out)) == ["sg-1", "sg-2"]
    types = {c.id: c.query_type for c in read_jsonl(out)}
    assert types == {"sg-1": "factual", "sg-2": "technical"}
    res = runner.invoke(app, ["corpus", "stats", str(out)])
    assert res.exit_code == 0, res.output


# --- rules backend --------------------------------------------------------------------------------------------


def test_rules_transforms() -> None:
    assert contract("It is what it is. Do not panic; you are fine and that is, mostly, it.") == \
        "It's what it is. Don't panic; you're fine and that is, mostly, it."
    assert expand("Don't panic, it's fine; you'll see. Why don't you ask? Play Don't Stop Believin' now.") == \
        "Do not panic, it is fine; you will see. Why don't you ask? Play Don't Stop Believin' now."
    code = "Run this:\n```python\nprint('we are great!')\n```\nWe can do it together! It's `great!`."
    c = cold(code)
    assert "```python\nprint('we are great!')\n```" in c and "`great!`" in c
    assert "We can" not in c and "together" not in c and "!" not in c.replace("great!", "")
    assert cold("Don't worry about it. Boil water for 3 minutes. We'll get there!") == \
        "Boil water for 3 minutes. You will get there."
    assert cold("Here are some names for your bakery:\n- Crumb") == "Names for your bakery:\n- Crumb"
    w = warm("Boil the water for 3 minutes.", "My dog died and I can't eat. How do I make tea?")
    assert w.startswith("I'm so sorry") and "Boil the water for 3 minutes." in w
    assert warm("x = 1", "q") == warm("x = 1", "q")  # deterministic


def test_rules_strip_what_no_variant_may_keep() -> None:
    assert strip_stock("Hello! 😊 Sure! Paris is the capital of France 🇫🇷. I hope this helps!") == \
        "Paris is the capital of France."
    assert strip_stock("Hi there, the answer is 42. Great question, by the way.") == "The answer is 42."
    assert strip_stock("Certainly! Here is the code:\n```\nprint(1)  # 😀\n```") == \
        "Here is the code:\n```\nprint(1)  # 😀\n```"


def test_cli_rules_backend_on_sharegpt(tmp_path: Path) -> None:
    sharegpt = [{"id": f"r{i}", "conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]}
                for i, (q, a) in enumerate([
                    ("My cat died yesterday. How long do cats usually live?",
                     "Indoor cats usually live 12 to 18 years; outdoor cats often live shorter lives."),
                    ("Write a haiku about rain.", "Here is a haiku:\n\nsoft rain on the roof\nthe kettle "
                                                  "begins to sing\nwe stay in today"),
                    ("How do I list files in Linux?", "Use `ls -la` to list all files, hidden ones included. "
                                                      "Hello! 🎉 We love it!"),
                ])]
    src = tmp_path / "sg.json"
    src.write_text(json.dumps(sharegpt))
    out = tmp_path / "rules.jsonl"
    res = CliRunner().invoke(app, ["corpus", "rewrite", str(src), "--out", str(out), "--backend", "rules"])
    assert res.exit_code == 0, res.output
    assert "3 rewritten now, 0 failed now" in res.output
    convs = {c.id: c for c in read_jsonl(out)}
    assert convs["r0"].assistant_turns[0].warm.startswith("I'm so sorry")
    assert {k: c.query_type for k, c in convs.items()} == {"r0": "factual", "r1": "creative", "r2": "technical"}
    assert "we stay" not in convs["r1"].assistant_turns[0].cold  # the poem line is edited, never dropped
    assert convs["r1"].assistant_turns[0].cold.count("\n") == 4
    # the source reply is kept as the neutral variant, so stats flags its emoji (and only that)
    res = CliRunner().invoke(app, ["corpus", "stats", str(out)])
    assert res.exit_code == 1 and res.output.rstrip().endswith("FAILED: emoji")
    assert "r2 turn 0 neutral [emoji]" in res.output


def test_every_warm_opener_meets_the_warm_checks() -> None:
    for openers in _OPENERS.values():
        for opener in openers:
            assert tx.contractions(opener) and tx.phrase_hits(opener, tx.WARM_WORDS), opener
            assert not tx.stock_phrases(opener) and not tx.emojis(opener)


def test_rules_backend_pass_rate_on_the_shipped_corpus(tmp_path: Path) -> None:
    """The rules rewrite of every shipped neutral turn passes the turn checks (report: >= 95% of conversations)."""
    rw = RulesRewriter()
    convs = [c for f in sorted(corpus_data().glob("*/*.jsonl")) for c in read_jsonl(f)]
    assert len(convs) > 300
    sources = [SourceConversation(c.id, tuple(Message("assistant", m.neutral) if isinstance(m, AssistantTurn)
                                              else Message(m.role, m.content) for m in c.messages)) for c in convs]
    out = tmp_path / "rules.jsonl"
    report = run_rewrite(sources, rw, out, concurrency=1)
    assert report.pass_rate >= 0.95, report.summary()
    loaded = load_files([out])
    assert all(r.ok for r in check_corpus(loaded, None) if r.name not in {"query_type", "duplicate_prompts"})
