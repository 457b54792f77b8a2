"""GGUF round trip: a tiny random model of each family written to a GGUF file (tests/gguf_writer.py), prepared with
`prepare(PATH.gguf)` under a temporary STEERWARM_HOME, loaded back by name, gives the original model's logits exactly
(`torch.equal`: F32 tensors, and llama.cpp's q/k permutation and Gemma's `+1` are undone exactly) and its fingerprint.

Each tiny model takes, where GGUF metadata as transformers reads it cannot state a value, the value the loader assumes
(`GGUF_SHAPE`; real checkpoints of these families use those values), and the tests show that a file which breaks
such an assumption is refused by name rather than loaded with re-initialised weights. Families whose architecture
transformers cannot read (`UNREADABLE`) get the clear error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from steerwarm.model.load import ModelNotFoundError, fingerprint, load, prepare, resolve
from tests.conftest import make_tokenizer
from tests.families import FAMILIES
from tests.gguf_writer import GEMMA_NORM_SHIFT, GGUF_ARCH, exact_gemma_norms, write_gguf

# What the file cannot say, so the tiny model uses what transformers' GGUF loader assumes:
GGUF_SHAPE: dict[str, dict[str, Any]] = {
    "mistral": {"sliding_window": None},  # no sliding-window key for llama-architecture files
    "qwen2": {"use_sliding_window": False, "sliding_window": None, "layer_types": None},  # no window key read
    "qwen3": {"head_dim": 128},  # qwen3.attention.key_length is not read; Qwen3's default head_dim is 128
    "gemma3": {"layer_types": None},  # no layer pattern key: the default, every 6th layer global
    "phi3": {"sliding_window": None},  # no window key read
    "gpt2": {"n_inner": None, "n_positions": 1024},  # feed_forward_length and context_length are not read
}
UNREADABLE = {"olmo2": "olmo2", "gpt_neox": "gptneox"}  # family -> GGUF architecture transformers 5.23 cannot read
READABLE = [f for f in FAMILIES if f not in UNREADABLE]
LOADS_AS = {"mistral": "llama"}  # llama.cpp writes Mistral as llama; it comes back as a Llama of the same weights
PROBE = torch.tensor([[2, 17, 40, 5, 63, 11, 9, 70, 33, 24, 51, 3]])  # longer than 2 * the families' window


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STEERWARM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "home"


def tiny(family: str, shaped: bool = True) -> nn.Module:
    """The family's tiny model (seed 0), with GGUF_SHAPE applied when `shaped`; Gemma norms made nonzero."""
    torch.manual_seed(0)
    model = FAMILIES[family]()
    if shaped and family in GGUF_SHAPE:
        config = type(model.config)(**{**model.config.to_dict(), **GGUF_SHAPE[family]})
        torch.manual_seed(0)
        model = type(model)(config)
    if GGUF_ARCH[model.config.model_type] in GEMMA_NORM_SHIFT:
        exact_gemma_norms(model)
    return model.eval()


def logits(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        out: torch.Tensor = model(input_ids=PROBE).logits
    return out


@pytest.mark.parametrize("family", READABLE)
def test_gguf_round_trip_is_exact(family: str, tmp_path: Path, home: Path) -> None:
    model = tiny(family)
    gguf = write_gguf(model, make_tokenizer(), tmp_path / f"Tiny-{family}.F32.gguf")
    res = prepare(str(gguf))
    assert res.created and res.path == home / "models" / f"tiny-{family}-f32"
    back = load(res.path.name)
    assert back.name == res.path.name
    assert back.model.config.model_type == LOADS_AS.get(family, model.config.model_type)
    assert torch.equal(logits(back.model), logits(model))
    meta = json.loads((res.path / "steerwarm.json").read_text())
    assert meta["fingerprint"] == back.fingerprint == res.fingerprint
    if family not in LOADS_AS:  # the model_type is part of a fingerprint
        assert back.fingerprint == fingerprint(model)
    assert prepare(str(gguf)).created is False  # idempotent
    assert resolve(str(gguf)) == (res.path.name, res.path)  # the file itself now resolves to its folder


@pytest.mark.parametrize("family", ["qwen3", "gpt2"])
def test_a_file_the_loader_would_reinitialise_is_refused(family: str, tmp_path: Path, home: Path) -> None:
    """A head_dim (qwen3) or MLP width / context (gpt2) the metadata cannot state: named, nothing installed."""
    gguf = write_gguf(tiny(family, shaped=False), make_tokenizer(), tmp_path / f"{family}.gguf")
    with pytest.raises(ModelNotFoundError, match=r"does not hold every weight .* expected.*nothing was installed"):
        prepare(str(gguf), name="odd")
    assert not (home / "models").exists() or not any((home / "models").iterdir())


@pytest.mark.parametrize("family", sorted(UNREADABLE))
def test_an_unreadable_architecture_is_named(family: str, tmp_path: Path) -> None:
    gguf = write_gguf(tiny(family), make_tokenizer(), tmp_path / f"{family}.gguf")
    with pytest.raises(ModelNotFoundError, match=rf"cannot read GGUF architecture '{UNREADABLE[family]}'.*llama"):
        prepare(str(gguf))


def test_unprepared_gguf_names_the_command(tmp_path: Path) -> None:
    gguf = tmp_path / "some.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(ModelNotFoundError, match=r"steerwarm model prepare .*some\.gguf"):
        resolve(str(gguf))
    with pytest.raises(ModelNotFoundError, match="no GGUF file"):
        prepare(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelNotFoundError, match="embedded model"):
        prepare(str(gguf), name="smollm2-135m")


def test_a_name_holds_one_file_unless_forced(tmp_path: Path) -> None:
    tok = make_tokenizer()
    a = write_gguf(tiny("llama"), tok, tmp_path / "a.gguf")
    torch.manual_seed(1)
    b = write_gguf(FAMILIES["llama"]().eval(), tok, tmp_path / "b.gguf")
    first = prepare(str(a), name="mine")
    with pytest.raises(ModelNotFoundError, match="--force"):
        prepare(str(b), name="mine")
    assert load("mine").fingerprint == first.fingerprint
    second = prepare(str(b), name="mine", force=True)
    assert second.created and second.fingerprint != first.fingerprint == fingerprint(tiny("llama"))
    assert load("mine").fingerprint == second.fingerprint


def test_cli_prepares_a_gguf_and_info_loads_it(tmp_path: Path) -> None:
    from steerwarm.cli.app import app

    gguf = write_gguf(tiny("llama"), make_tokenizer(), tmp_path / "tiny.gguf")
    res = CliRunner().invoke(app, ["model", "prepare", str(gguf), "--name", "x"])
    assert res.exit_code == 0, res.output
    assert "use --model x" in res.output
    res = CliRunner().invoke(app, ["model", "info", "x", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output[res.output.index("{"):])
    assert info["name"] == "x" and info["model_type"] == "llama" and info["fingerprint"] == fingerprint(tiny("llama"))
    assert resolve(str(gguf))[0] == "x"  # the file resolves to the folder prepared from it, whatever its name
    res = CliRunner().invoke(app, ["model", "info", str(tmp_path / "other.gguf")])
    assert res.exit_code != 0
