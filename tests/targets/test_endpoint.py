"""The endpoint target and the LLM judge against a fake OpenAI-compatible server over real HTTP on 127.0.0.1, through
the official openai client: extra body, retries with backoff, concurrency, likelihood via echo+logprobs (and a clear
error where unsupported), generate mode, judge verdicts, validate-judge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from steerwarm.bench.items import Item
from steerwarm.bench.judge import Judge, judge_messages, parse_judgement
from steerwarm.bench.replies import replies
from steerwarm.bench.runner import RunConfig, run_benchmark
from steerwarm.cli.app import app
from steerwarm.targets.endpoint import EndpointClient, EndpointError, EndpointSpec, LikelihoodUnsupportedError
from steerwarm.targets.likelihood import ReplyScore, pair_texts, score_from_token_logprobs
from steerwarm.targets.registry import EndpointTarget, GenSettings, tokenizer_only
from tests.bench_fixtures import FakeState, fake_token_logprobs
from tests.conftest import SHARED_DATA


def _client(url: str, **kw: object) -> EndpointClient:
    return EndpointClient(f"{url}#fake-model", sleep=lambda s: None, **kw)  # type: ignore[arg-type]


def test_spec_parsing() -> None:
    assert EndpointSpec.parse("http://h:1/v1#m") == EndpointSpec("http://h:1/v1", "m")
    assert EndpointSpec.parse("https://h/v1/") == EndpointSpec("https://h/v1", None)
    with pytest.raises(ValueError, match="HOST:PORT"):
        EndpointSpec.parse("h:1/v1")


def test_warmth_suffix_parses_refuses_bad_values_and_conflicts() -> None:
    assert EndpointSpec.parse("http://h:1/v1#m@warmth=0.5") == EndpointSpec("http://h:1/v1", "m", 0.5)
    assert EndpointSpec.parse("http://h:1/v1/#m@warmth=-1.25 ") == EndpointSpec("http://h:1/v1", "m", -1.25)
    assert EndpointSpec.parse("http://h:1/v1#@warmth=1") == EndpointSpec("http://h:1/v1", None, 1.0)
    assert str(EndpointSpec.parse("http://h/v1#m@warmth=-0").warmth) == "0.0"
    for suffix, msg in [("#m@warmth=hot", "'hot' is not a number"), ("#m@warmth=nan", "finite"),
                        ("#m@warmth=inf", "finite"), ("#m@warmth=", "'' is not a number"),
                        ("#m@temp=1", "only suffix understood"), ("#m@warmth=1@warmth=2", "not a number"),
                        ("#m@x@warmth=1", "only suffix understood")]:
        with pytest.raises(ValueError, match=msg):
            EndpointSpec.parse("http://h:1/v1" + suffix)
    client = EndpointClient("http://127.0.0.1:9/v1#m@warmth=0.5", extra_body={"top_k": 3})
    assert client.extra_body == {"top_k": 3, "warmth": 0.5} and client.spec.model == "m"
    assert client.describe()["warmth"] == 0.5 and client.describe()["model"] == "m"
    assert EndpointClient("http://127.0.0.1:9/v1#m", extra_body={"warmth": 1}).extra_body == {"warmth": 1}
    with pytest.raises(ValueError, match="warmth is given twice"):
        EndpointClient("http://127.0.0.1:9/v1#m@warmth=0.5", extra_body={"warmth": 1})
    runner = CliRunner()
    bad = runner.invoke(app, ["bench", "run", "--target", "http://127.0.0.1:9/v1#m@warmth=1", "--out", "unused",
                              "--extra-body", '{"warmth": 1}', "--no-progress"])
    assert bad.exit_code == 2 and "warmth is given twice" in bad.output, bad.output
    bad = runner.invoke(app, ["bench", "run", "--target", "http://127.0.0.1:9/v1#m@warmth=x", "--out", "unused",
                              "--no-progress"])
    assert bad.exit_code == 2 and "is not a number" in bad.output, bad.output


def test_warmth_suffix_is_sent_in_the_body_only(fake_server: tuple[str, FakeState], tiny_folder: Path) -> None:
    url, state = fake_server
    target = EndpointTarget(f"{url}#fake-model@warmth=-0.75", EndpointClient(f"{url}#fake-model@warmth=-0.75"),
                            str(tiny_folder))
    assert target.generate(["hi"], GenSettings(max_tokens=3), seed=0) == ["the answer is cup ."]
    target.score(["where is the tea?"], [("in the cup", "in the pot")])
    assert [r["path"] for r in state.requests] == ["chat", "completions", "completions"]
    assert all(r["warmth"] == -0.75 and r["model"] == "fake-model" for r in state.requests)
    assert target.describe()["warmth"] == -0.75


def test_chat_with_extra_body_retries_and_model_discovery(fake_server: tuple[str, FakeState]) -> None:
    url, state = fake_server
    state.fail_first = 2
    client = EndpointClient(url, extra_body={"warmth": 0.5}, sleep=lambda s: None)
    assert client.model == "fake-model"  # discovered from /v1/models (after two 503s)
    assert client.chat([{"role": "user", "content": "hi"}], temperature=0.8, max_tokens=5) == "the answer is cup ."
    assert client.retried == 2
    chat = [r for r in state.requests if r["path"] == "chat"]
    assert chat[-1]["warmth"] == 0.5 and chat[-1]["temperature"] == 0.8 and chat[-1]["max_tokens"] == 5
    state.fail_first, state.requests = 10**6, []
    with pytest.raises(EndpointError, match="InternalServerError"):
        _client(url, retries=2).chat([{"role": "user", "content": "hi"}], temperature=0, max_tokens=1)
    assert len(state.requests) == 3  # one try and two retries


def test_backoff_doubles_without_retry_after(fake_server: tuple[str, FakeState]) -> None:
    url, _ = fake_server
    waits: list[float] = []
    client = EndpointClient(f"{url}#fake-model", sleep=waits.append, retries=3, backoff=1.0)
    calls = {"n": 0}

    def flaky() -> int:
        import importlib.util

        import openai

        # openai 3 sends requests with httpx2, older releases (the floor, scripts/check_floor) with httpx
        httpx = importlib.import_module("httpx2" if importlib.util.find_spec("httpx2") else "httpx")
        calls["n"] += 1
        if calls["n"] <= 3:
            raise openai.APIConnectionError(request=httpx.Request("GET", url))
        return 7

    assert client.call(flaky) == 7
    assert len(waits) == 3 and 0.75 <= waits[0] <= 1.25 and 1.5 <= waits[1] <= 2.5 and 3 <= waits[2] <= 5


def test_endpoint_likelihood_matches_hand_computation(fake_server: tuple[str, FakeState], tiny_folder: Path
                                                      ) -> None:
    url, state = fake_server
    target = EndpointTarget(f"{url}#fake-model", _client(url, extra_body={"warmth": -1.0}), str(tiny_folder))
    item = Item("trivia", "t1", "what do i make with tea ?", "cup", "water")
    user = "i think the answer is water . what do i make with tea ?"
    got = target.score([user], [replies(item)])[0]
    prompt, conts, start = pair_texts(tokenizer_only(str(tiny_folder)), user, replies(item))
    expect = []
    for c in conts:
        _, lps, offs = fake_token_logprobs(prompt + c)
        expect.append(score_from_token_logprobs(offs, lps, len(prompt) + start))
    assert (got.correct, got.wrong) == tuple(expect)
    assert isinstance(got.correct, ReplyScore) and not got.is_incorrect  # the fake favours "cup"
    sent = [r for r in state.requests if r["path"] == "completions"]
    assert len(sent) == 2 and all(r["echo"] and r["logprobs"] == 1 and r["max_tokens"] == 0 and r["warmth"] == -1.0
                                  for r in sent)


def test_endpoint_without_prompt_logprobs_says_so(fake_server: tuple[str, FakeState], tiny_folder: Path) -> None:
    url, state = fake_server
    state.completions_supported = False
    target = EndpointTarget(f"{url}#fake-model", _client(url), str(tiny_folder))
    with pytest.raises(LikelihoodUnsupportedError, match="use --mode generate"):
        target.score(["q ?"], [replies(Item("trivia", "t", "q ?", "cup", "water"))])


def test_endpoint_runs_in_both_modes_with_concurrency(fake_server: tuple[str, FakeState], tiny_folder: Path,
                                                      tiny_items: dict[str, Path], tmp_path: Path) -> None:
    url, state = fake_server
    state.delay = 0.05
    state.fail_first = 3
    spec = f"{url}#fake-model"
    target = EndpointTarget(spec, _client(url, extra_body={"warmth": 0.25}, concurrency=4), str(tiny_folder))
    items = {"trivia": tiny_items["trivia"]}
    cfg = RunConfig(tasks=["trivia"], out=tmp_path / "gen", items=items, mode="generate", batch_size=8,
                    templates=["original", "incorrect"], conditions=["unmodified", "emotion:sad"],
                    gen=GenSettings(max_tokens=20))
    res = run_benchmark(cfg, target, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "gen" / "results.jsonl").read_text().splitlines()]
    assert res.total == len(rows) == 12
    by_id = {r["prompt_id"]: r for r in rows}
    assert by_id["trivia:t1|original|unmodified"]["verdict"] == "correct"  # the fake always says "cup"
    assert by_id["trivia:t2|original|unmodified"]["verdict"] == "incorrect"
    assert all(r["warmth"] == 0.25 for r in state.requests)
    assert 1 < state.max_in_flight <= 4
    state.chat_reply = lambda m: "INCORRECT" if m[0]["role"] == "system" else "the answer is cup ."
    judged = RunConfig(tasks=["trivia"], out=tmp_path / "judged", items=items, mode="generate", batch_size=8,
                       templates=["original"], conditions=["unmodified"], gen=GenSettings(max_tokens=20))
    run_benchmark(judged, target, judge=Judge(_client(url)), progress=False)
    rows = [json.loads(x) for x in (tmp_path / "judged" / "results.jsonl").read_text().splitlines()]
    assert [r["verdict"] for r in rows] == ["incorrect"] * 3 and all(r["scorer"] == "judge" for r in rows)
    cfg_json = json.loads((tmp_path / "judged" / "run.json").read_text())["config"]
    assert cfg_json["scorer"] == f"judge {url}#fake-model"
    lik = RunConfig(tasks=["trivia"], out=tmp_path / "lik", items=items, batch_size=8, templates=["original"],
                    conditions=["unmodified"])
    res = run_benchmark(lik, target, progress=False)
    assert res.total == 3 and "raw_forward_prompts_per_s" not in res.throughput


def test_judge_prompt_parsing_and_verdicts(fake_server: tuple[str, FakeState]) -> None:
    url, state = fake_server
    item = Item("trivia", "t", "Capital of Australia?", "Canberra", "Sydney")
    msgs = judge_messages(item, "It is Sydney.")
    assert "Reference answer: Canberra" in msgs[1]["content"] and "Sydney" in msgs[1]["content"]
    med = judge_messages(Item("medqa", "m", "q", "A", "B", options=("A", "B", "C")), "x")[1]["content"]
    assert "- C" in med
    assert parse_judgement("INCORRECT.") is False and parse_judgement("Correct") is True
    with pytest.raises(EndpointError, match="neither"):
        parse_judgement("maybe")
    state.chat_reply = lambda m: "CORRECT" if "Canberra" in m[-1]["content"].split("Assistant's response")[1] \
        else "INCORRECT"
    judge = Judge(_client(url))
    v = judge.verdicts([(item, "Canberra, of course."), (item, "Sydney."), (item, "I'm sorry, but I can't.")])
    assert [x.verdict for x in v] == ["correct", "incorrect", "refusal"]
    assert state.requests[-1]["temperature"] == 0.0
    assert len([r for r in state.requests if r["path"] == "chat"]) == 2  # refusals never reach the judge


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent")
def test_validate_judge_command(fake_server: tuple[str, FakeState], tmp_path: Path) -> None:
    url, state = fake_server
    state.chat_reply = lambda m: "CORRECT"
    out = tmp_path / "val"
    res = CliRunner().invoke(app, ["bench", "validate-judge", "--judge", f"{url}#fake-model", "--out", str(out),
                                   "--concurrency", "8"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "validate-judge.json").read_text())
    assert report["rows"] > 300 and set(report["scorers"]) == {"matcher", f"judge {url}#fake-model"}
    matcher = report["scorers"]["matcher"]["overall"]
    assert matcher["agreement"] > 0.75 and matcher["kappa"] > 0.4
    always = report["scorers"][f"judge {url}#fake-model"]["overall"]
    assert always["kappa"] == pytest.approx(0.0)  # a judge that always says CORRECT agrees by chance only
    assert "| trivia |" in (out / "validate-judge.md").read_text()
