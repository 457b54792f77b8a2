"""The command line is grouped by noun, in pipeline order, and every command's help renders."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from steerwarm.cli.app import app

NOUNS = ["model", "vector", "finetune", "meter", "bench", "sweep", "corpus", "serve", "generate", "demo"]


def listed(output: str) -> list[str]:
    """Command names in the order `--help` lists them (first word of each row inside a panel)."""
    return re.findall(r"^[│|]\s+([a-z][a-z-]*)\s{2,}", output, flags=re.M)


def test_help_lists_the_noun_groups_in_pipeline_order() -> None:
    res = CliRunner().invoke(app, ["--help"], terminal_width=100)
    assert res.exit_code == 0, res.output
    assert listed(res.output) == NOUNS


def all_commands() -> list[list[str]]:
    """Every command path, e.g. ['vector', 'extract', 'finetune']."""
    out: list[list[str]] = []

    def walk(cmd: Any, path: list[str]) -> None:  # typer vendors its own click: duck-type groups
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        else:
            out.append(path)

    walk(typer.main.get_command(app), [])
    return out


def test_the_commands_are_grouped_by_noun() -> None:
    paths = {" ".join(p) for p in all_commands()}
    assert {"vector extract contrast", "vector extract finetune", "vector extract corpus",
            "vector extract system-prompt", "vector difference", "vector choose-layer", "vector calibrate",
            "vector card", "vector inspect", "vector info", "vector export-gguf", "vector import-gguf",
            "finetune train", "finetune prepare", "finetune ship", "meter score", "meter compare",
            "sweep run", "sweep report", "model prepare", "model info"} <= paths
    assert {p.split()[0] for p in paths} == set(NOUNS)


@pytest.mark.parametrize("path", all_commands(), ids=" ".join)
def test_every_command_has_help(path: list[str]) -> None:
    res = CliRunner().invoke(app, [*path, "--help"])
    assert res.exit_code == 0, res.output
    assert "--finetuned" not in res.output and "--tuned" not in res.output and "sft" not in res.output


MODEL_COMMANDS = [["generate", "hi"], ["model", "info"], ["serve"], ["bench", "run", "--target", "base", "--out", "b",
                  "--tasks", "trivia"], ["sweep", "run", "--warmth", "0", "--out", "s"],
                  ["vector", "extract", "contrast", "--pos", "t.txt", "--neg", "t.txt", "--out", "v.safetensors"],
                  ["finetune", "train", "--variant", "warm", "--out", "f"], ["meter", "compare", "--target", "base",
                                                                              "--out", "m"],
                  ["meter", "score", "in.jsonl", "--out", "o.jsonl"]]


@pytest.mark.parametrize("command", MODEL_COMMANDS, ids=[" ".join(c[:2]) for c in MODEL_COMMANDS])
def test_commands_that_load_a_model_refuse_a_missing_device_by_naming_the_ones_there(
        command: list[str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from steerwarm.model.device import available_devices

    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.txt").write_text("hello\n")
    (tmp_path / "in.jsonl").write_text('{"text": "hello"}\n')
    res = CliRunner().invoke(app, [*command, "--device", "cuda:97"], terminal_width=200)
    assert res.exit_code == 2, res.output
    assert "device 'cuda:97' is not available here; available: " + ", ".join(available_devices()) in res.output
    assert not (tmp_path / "v.safetensors").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_generate_on_cuda_without_cuda_names_the_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    res = CliRunner().invoke(app, ["generate", "hello", "--device", "cuda"], terminal_width=200)
    assert res.exit_code == 2
    assert "device 'cuda' is not available here; available: cpu" in res.output
    monkeypatch.setenv("STEERWARM_DEVICE", "cuda:98")  # the default comes from the environment
    res = CliRunner().invoke(app, ["model", "info"], terminal_width=200)
    assert res.exit_code == 2 and "device 'cuda:98' is not available" in res.output


def test_a_missing_vector_file_is_a_one_line_error(tmp_path: Any) -> None:
    for command in (["vector", "info"], ["vector", "card", "--out", str(tmp_path / "c.md")]):
        res = CliRunner().invoke(app, [*command, str(tmp_path / "nope.safetensors")], terminal_width=200)
        assert res.exit_code == 2 and "no steering vector at" in res.output and "Traceback" not in res.output
