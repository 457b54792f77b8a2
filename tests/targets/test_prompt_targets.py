"""Prompt targets (`prompt=warm|cold|FILE`): the template's default system prompt found by rendering, our instruction
placed once after it, in both modes and through an endpoint; clear errors for bad files; describe() follows the
text; the one rule of target strings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import steerwarm.steer.generate as gen_module
from steerwarm.bench.items import Item
from steerwarm.bench.replies import replies
from steerwarm.finetune.shipped import VARIANTS
from steerwarm.model.chat import chat_text
from steerwarm.model.load import LoadedModel
from steerwarm.targets.likelihood import pair_texts
from steerwarm.targets.prompt import (
    SEPARATOR,
    default_system_prompt,
    load_prompt,
    system_message,
    user_turn,
)
from steerwarm.targets.registry import GenSettings, LocalTarget, check_target_spec, parse_target
from tests.bench_fixtures import FakeState
from tests.conftest import make_tokenizer

# SmolLM2-135M-Instruct's template, as it ships: a default system prompt when the conversation has none
SMOL_DEFAULT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
SMOL_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\n" + SMOL_DEFAULT + "<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# a header written whether or not a system message is given, with nothing in it by default (Llama 3.1's shape)
HEADER_TEMPLATE = (
    "{{ '<|im_start|>system\nKnowledge: 2024\n\n' }}{% if messages[0]['role'] == 'system' %}"
    "{{ messages[0]['content'] }}{% set rest = messages[1:] %}{% else %}{% set rest = messages %}{% endif %}"
    "{{ '<|im_end|>\n' }}{% for m in rest %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
REFUSING_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
)
INSTRUCTION = "be kind and warm to the user ."  # words of the tiny vocabulary, so the tiny model reads them
ITEM = Item("trivia", "t1", "what do i make with tea ?", "cup", "water")
USERS = ["what do i make with tea ?", "i feel sad . what do i make with tea ? i think the answer is water ."]


def with_template(model: LoadedModel, template: str) -> LoadedModel:
    tok = make_tokenizer(bench=True)
    tok.chat_template = template
    return LoadedModel(model=model.model, tokenizer=tok, name="tiny", path=model.path, fingerprint=model.fingerprint)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- the prompt texts -----------------------------------------------------------------------------------------------
def test_shipped_prompts_keep_the_facts_and_differ() -> None:
    warm, cold = load_prompt("warm"), load_prompt("cold")
    for p in (warm, cold):
        assert "Keep the answer's facts and accuracy unchanged" in p.text and p.text == p.text.strip()
        assert p.source == "shipped" and p.record()["prompt"] == p.name
    assert warm.text.startswith("Answer warmly") and cold.text.startswith("Answer coldly")
    assert warm.sha256 != cold.sha256


def test_prompt_file_missing_empty_or_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"prompt=.*nope\.txt: no such file; use prompt=warm"):
        load_prompt(str(tmp_path / "nope.txt"))
    with pytest.raises(ValueError, match="the file is empty"):
        load_prompt(str(write(tmp_path / "empty.txt", " \n\t\n")))
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("soyez chaleureux, s'il vous pla\xeet".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        load_prompt(str(bad))
    with pytest.raises(ValueError, match=r"--reference 'prompt=.*nope\.txt': prompt=.*no such file"):
        check_target_spec(f"prompt={tmp_path / 'nope.txt'}", "--reference")
    p = load_prompt(str(write(tmp_path / "mine.txt", "\n  Be brief.  \n")))
    assert (p.name, p.text) == ("mine.txt", "Be brief.")


# -- the template's default -----------------------------------------------------------------------------------------
def test_default_system_prompt_is_found_by_rendering(btiny: LoadedModel) -> None:
    assert default_system_prompt(btiny) is None  # the tiny template writes no system turn of its own
    assert default_system_prompt(with_template(btiny, SMOL_TEMPLATE)) == SMOL_DEFAULT
    assert default_system_prompt(with_template(btiny, HEADER_TEMPLATE)) is None  # an empty default
    with pytest.raises(ValueError, match=r"refuses a system message.*System role not supported"):
        default_system_prompt(with_template(btiny, REFUSING_TEMPLATE))


@pytest.mark.parametrize("template", [SMOL_TEMPLATE, HEADER_TEMPLATE, None])
def test_the_instruction_is_the_only_difference_from_base(btiny: LoadedModel, template: str | None) -> None:
    """The rendered prompt and both continuations hold the instruction exactly once; with a default system prompt
    it comes right after the default (SEPARATOR between), and removing it gives the base conversation back."""
    loaded = with_template(btiny, template) if template else btiny
    system = system_message(loaded, INSTRUCTION)
    base_prompt, base_conts, base_start = pair_texts(loaded, USERS[1], replies(ITEM))
    prompt, conts, start = pair_texts(loaded, USERS[1], replies(ITEM), system)
    assert prompt.count(INSTRUCTION) == 1 and (conts, start) == (base_conts, base_start)
    if template == SMOL_TEMPLATE:
        assert system == SMOL_DEFAULT + SEPARATOR + INSTRUCTION
        assert prompt.replace(SEPARATOR + INSTRUCTION, "") == base_prompt
        assert prompt.index(SMOL_DEFAULT) < prompt.index(INSTRUCTION)
    elif template == HEADER_TEMPLATE:
        assert system == INSTRUCTION and prompt.replace(INSTRUCTION, "") == base_prompt
    else:  # no system turn by default: ours is added, holding the instruction alone
        assert system == INSTRUCTION
        alone = chat_text(loaded, [{"role": "system", "content": INSTRUCTION}], add_generation_prompt=False)
        assert prompt == alone + base_prompt


@pytest.mark.slow
def test_real_template_places_warm_after_smollm_default(real: LoadedModel) -> None:
    warm = LocalTarget("prompt=warm", real, "prompt", prompt=load_prompt("warm"))
    assert warm.system == SMOL_DEFAULT + SEPARATOR + load_prompt("warm").text
    text = chat_text(real, user_turn("Is the Earth flat?", warm.system))
    assert text.count(load_prompt("warm").text) == 1 and text.count(SMOL_DEFAULT) == 1
    pair = replies(Item("trivia", "t", "Is the Earth flat?", "No", "Yes"))
    base = LocalTarget("base", real, "base").score(["Is the Earth flat?"], [pair])[0]
    assert warm.score(["Is the Earth flat?"], [pair])[0] != base


# -- targets in both modes ------------------------------------------------------------------------------------------
def test_prompt_target_scores_generates_and_describes(tiny_folder: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    kw = {"model": str(tiny_folder)}
    file = write(tmp_path / "kind.txt", INSTRUCTION + "\n")
    base, prompted = parse_target("base", **kw), parse_target(f"prompt={file}", **kw)
    assert isinstance(prompted, LocalTarget) and prompted.system == INSTRUCTION and prompted.kind == "prompt"
    pairs = [replies(ITEM)] * len(USERS)
    b, p = base.score(USERS, pairs), prompted.score(USERS, pairs)
    assert all(x.correct.mean != y.correct.mean and x.wrong.mean != y.wrong.mean for x, y in zip(b, p, strict=True))
    assert all(x.correct.n_tokens == y.correct.n_tokens for x, y in zip(b, p, strict=True))  # same scored span

    seen: list[list[str]] = []
    real_generate = gen_module.generate_texts

    def spy(loaded: LoadedModel, prompts: list[str], **kw: Any) -> list[str]:
        seen.append(list(prompts))
        texts: list[str] = real_generate(loaded, prompts, **kw)
        return texts

    monkeypatch.setattr(gen_module, "generate_texts", spy)
    out = prompted.generate(USERS, GenSettings(max_tokens=4, temperature=0.0), seed=0)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
    assert [s.count(INSTRUCTION) for s in seen[0]] == [1, 1]
    base.generate(USERS, GenSettings(max_tokens=4, temperature=0.0), seed=0)
    assert [s.count(INSTRUCTION) for s in seen[1]] == [0, 0]

    desc = prompted.describe()
    assert (desc["prompt"], desc["kind"]) == ("kind.txt", "prompt") and len(desc["prompt_sha256"]) == 64
    assert "prompt" not in base.describe()
    write(file, INSTRUCTION + " please\n")
    changed = parse_target(f"prompt={file}", **kw).describe()
    assert changed["prompt_sha256"] != desc["prompt_sha256"]
    assert {k: v for k, v in changed.items() if k != "prompt_sha256"} == {
        k: v for k, v in desc.items() if k != "prompt_sha256"}
    assert parse_target("prompt=warm", **kw).describe()["prompt"] == "warm"


def test_prompt_reaches_an_endpoint_in_both_modes(fake_server: tuple[str, FakeState], tiny_folder: Path) -> None:
    url, state = fake_server
    target = parse_target(f"prompt=cold@{url}#fake-model", tokenizer=str(tiny_folder))
    cold = load_prompt("cold").text
    assert target.describe()["prompt"] == "cold" and target.describe()["kind"] == "endpoint"
    target.generate(["what is the time ?"], GenSettings(max_tokens=5), seed=0)
    chat = [r for r in state.requests if "messages" in r]
    assert chat[-1]["messages"] == [{"role": "system", "content": cold},
                                    {"role": "user", "content": "what is the time ?"}]
    target.score(["what do i make with tea ?"], [replies(ITEM)])
    echoed = [r["prompt"] for r in state.requests if "prompt" in r]
    assert len(echoed) == 2 and all(e.count(cold) == 1 for e in echoed)


# -- the one rule of target strings ---------------------------------------------------------------------------------
def test_check_target_spec_forms_and_errors(tiny_folder: Path, tmp_path: Path) -> None:
    forms = {"base": "base", "warmth=-0.5": "warmth", "prompt=warm": "prompt", "prompt=cold": "prompt",
             "http://h:1/v1#m": "endpoint", "prompt=warm@http://h:1/v1#m": "prompt", str(tiny_folder): "folder",
             **{f"finetune={v}": "finetune" for v in VARIANTS}}
    assert {s: check_target_spec(s) for s in forms} == forms
    with pytest.raises(ValueError, match="finetune=V needs " + " or ".join(VARIANTS) + "$"):
        check_target_spec("finetune=hot")
    with pytest.raises(ValueError, match="warmth=W needs a number"):
        check_target_spec("warmth=lots")
    with pytest.raises(ValueError, match=r"--reference 'nonsense': unknown target; use base, warmth=W"):
        check_target_spec("nonsense", "--reference")
    with pytest.raises(ValueError, match="finetune=V needs"):
        parse_target("finetune=hot")
    assert json.dumps(load_prompt("warm").record())  # a plain JSON record
