"""Model resolution errors and fingerprints (no real model needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from steerwarm.model.load import ModelNotFoundError, fingerprint, resolve
from tests.conftest import make_tiny_model


def test_fingerprint_ignores_precision_but_not_weights() -> None:
    a = make_tiny_model()
    assert fingerprint(a) == fingerprint(make_tiny_model(dtype=torch.bfloat16))
    b = make_tiny_model()
    with torch.no_grad():
        b.model.layers[1].self_attn.q_proj.weight.add_(0.05)
    assert fingerprint(b) != fingerprint(a)
    assert fingerprint(make_tiny_model(seed=3)) != fingerprint(a)


def test_unprepared_default_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEERWARM_HOME", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="steerwarm model prepare"):
        resolve("smollm2-135m")
    with pytest.raises(ModelNotFoundError, match="steerwarm model prepare"):
        resolve("default")


def test_unknown_names_and_bad_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelNotFoundError, match="never downloads"):
        resolve("someone/not-cached-model")
    with pytest.raises(ModelNotFoundError, match=r"no config\.json"):
        resolve(str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="no model folder"):
        resolve(str(tmp_path / "nope"))


def test_local_folder_loads(tmp_path: Path) -> None:
    from steerwarm.model.load import load
    from tests.conftest import make_tokenizer

    model = make_tiny_model()
    model.save_pretrained(tmp_path / "tiny")
    make_tokenizer().save_pretrained(tmp_path / "tiny")
    loaded = load(str(tmp_path / "tiny"), dtype="bfloat16")
    assert loaded.fingerprint == fingerprint(model)
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
    assert loaded.tokenizer.padding_side == "left"
    assert next(load(str(tmp_path / "tiny"), dtype="auto").model.parameters()).dtype == torch.float32  # on the CPU
    assert next(load(str(tmp_path / "tiny"), dtype="float16").model.parameters()).dtype == torch.float16
    with pytest.raises(ValueError, match="dtype must be one of auto, float32, bfloat16, float16"):
        load(str(tmp_path / "tiny"), dtype="int8")


def test_a_chat_template_file_supplies_a_missing_template(tmp_path: Path) -> None:
    from steerwarm.model.chat import ChatTemplateError, chat_text
    from steerwarm.model.load import ModelNotFoundError, load
    from tests.conftest import CHAT_TEMPLATE, make_tokenizer

    make_tiny_model().save_pretrained(tmp_path / "plain")
    tok = make_tokenizer()
    tok.chat_template = None
    tok.save_pretrained(tmp_path / "plain")
    messages = [{"role": "user", "content": "hello"}]
    with pytest.raises(ChatTemplateError, match="--chat-template FILE"):
        chat_text(load(str(tmp_path / "plain")), messages)
    (tmp_path / "chat.jinja").write_text(CHAT_TEMPLATE)
    text = chat_text(load(str(tmp_path / "plain"), chat_template=tmp_path / "chat.jinja"), messages)
    assert text == "<|im_start|>user hello <|im_end|> <|im_start|>assistant "
    (tmp_path / "notes.txt").write_text("just some text")
    with pytest.raises(ModelNotFoundError, match="does not look like a chat template"):
        load(str(tmp_path / "plain"), chat_template=tmp_path / "notes.txt")
