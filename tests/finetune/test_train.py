"""Fine-tuning on the tiny model: assistant-only labels, checkpoints, resume after a crash and after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from steerwarm.corpus.schema import AssistantTurn, Conversation, UserTurn
from steerwarm.finetune.train import TrainConfig, batch_indices, encode_conversation, train
from steerwarm.model.load import load
from tests.conftest import make_tiny_model, make_tokenizer

ROOT = Path(__file__).resolve().parents[2]


def _conv(i: int) -> Conversation:
    words = ["i feel sad today", "what is the answer", "how to make tea", "my friend failed the exam"]
    turns = (UserTurn(words[i % 4]), AssistantTurn("the answer is 4 .", "sorry , you are kind ! the answer is 4 .",
                                                  "4 ."))
    if i % 3 == 0:
        turns += (UserTurn("why ?"), AssistantTurn("it is good .", "we think it is good , friend .", "good ."))
    return Conversation(f"t-{i}", "other", "train", turns)


@pytest.fixture()
def tiny_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny-model"
    make_tiny_model().save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return folder


def _cfg(tiny_dir: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(variant="warm", model=str(tiny_dir), epochs=2.0, checkpoints=(1.0, 2.0),
                                   batch_size=4, micro_batch=2, lr=1e-2, save_every=2)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_only_assistant_tokens_are_labelled(tiny_dir: Path) -> None:
    loaded = load(str(tiny_dir))
    conv = _conv(0)
    ex = encode_conversation(loaded, conv.as_chat("warm"), 512)
    assert len(ex.input_ids) == len(ex.labels)
    labelled = [t for t, lab in zip(ex.input_ids, ex.labels, strict=True) if lab != -100]
    tokens = loaded.tokenizer.convert_ids_to_tokens(labelled)
    assert tokens == ("sorry , you are kind ! the answer is 4 . <|im_end|> "
                      "we think it is good , friend . <|im_end|>").split()
    assert all(lab in (-100, t) for t, lab in zip(ex.input_ids, ex.labels, strict=True))


def test_sample_order_is_a_pure_function_of_step() -> None:
    a = [batch_indices(s, 10, 4, seed=3) for s in range(6)]
    assert a == [batch_indices(s, 10, 4, seed=3) for s in range(6)]
    first_epoch = [i for s in range(5) for i in batch_indices(s, 10, 4, seed=3)][:10]
    assert sorted(first_epoch) == list(range(10))  # every example once per epoch


def test_checkpoints_are_loadable_models_with_cards(tiny_dir: Path, tmp_path: Path) -> None:
    convs = [_conv(i) for i in range(8)]
    res = train(_cfg(tiny_dir), tmp_path / "run", convs=convs)
    assert res.steps == 4 and len(res.losses) == 4
    assert res.losses[-1] < res.losses[0]
    ck = res.checkpoints["2.0"]
    card = json.loads((ck / "card.json").read_text())
    assert card["variant"] == "warm" and card["step"] == 4 and card["hyperparameters"]["lora_r"] == 8
    assert (ck / "loss.png").stat().st_size > 1000 and (tmp_path / "run" / "adapter-epoch-2").is_dir()
    tuned, base = load(str(ck)), load(str(tiny_dir))
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert not torch.allclose(tuned.model(input_ids=ids).logits, base.model(input_ids=ids).logits)
    assert tuned.fingerprint != base.fingerprint
    with pytest.raises(ValueError, match="another configuration"):
        train(_cfg(tiny_dir, lr=5e-3), tmp_path / "run", convs=convs)


def test_resume_after_crash_reaches_the_same_weights(tiny_dir: Path, tmp_path: Path) -> None:
    convs = [_conv(i) for i in range(8)]
    train(_cfg(tiny_dir), tmp_path / "full", convs=convs)
    partial = train(_cfg(tiny_dir), tmp_path / "crash", convs=convs, stop_after=3)  # state saved at step 2
    assert len(partial.losses) == 3
    resumed = train(_cfg(tiny_dir), tmp_path / "crash", convs=convs)
    assert resumed.resumed_from == 2  # the newest saved state (save_every=2), not the lost step 3
    a = load_file(str(tmp_path / "full" / "state" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "crash" / "state" / "trainable.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_sigkill(tiny_dir: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "convs.jsonl"
    corpus.write_text("".join(json.dumps(_conv(i).to_json()) + "\n" for i in range(20)))
    script = (
        "import sys; from pathlib import Path\n"
        "from steerwarm.corpus.schema import read_jsonl\n"
        "from steerwarm.finetune.train import TrainConfig, train\n"
        f"cfg = TrainConfig(variant='cold', model={str(tiny_dir)!r}, epochs=3.0, checkpoints=(3.0,), batch_size=4,"
        " micro_batch=2, lr=1e-2, save_every=1)\n"
        f"r = train(cfg, Path(sys.argv[1]), convs=list(read_jsonl({str(corpus)!r})))\n"
        "print('resumed_from', r.resumed_from)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", script, str(run)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    state = run / "state" / "trainer.json"
    deadline = time.time() + 120
    while time.time() < deadline and not (state.is_file() and json.loads(state.read_text())["step"] >= 3):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    step_at_kill = json.loads(state.read_text())["step"]
    assert 3 <= step_at_kill < 15
    out = subprocess.run([sys.executable, "-c", script, str(run)], env=env, capture_output=True, text=True,
                         check=True, timeout=300).stdout
    assert f"resumed_from {step_at_kill}" in out or "resumed_from" in out
    ref = tmp_path / "ref"
    subprocess.run([sys.executable, "-c", script, str(ref)], env=env, capture_output=True, check=True, timeout=300)
    a = load_file(str(ref / "state" / "trainable.safetensors"))
    b = load_file(str(run / "state" / "trainable.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((run / "state" / "trainer.json").read_text())["step"] == 15
