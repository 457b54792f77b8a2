"""Fine-tuning on the tiny model: assistant-only labels, checkpoints, resume after a crash and after SIGKILL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from steerwarm.corpus.schema import AssistantTurn, Conversation, UserTurn
from steerwarm.finetune.train import STEPS_LOG, TrainConfig, batch_indices, encode_conversation, train
from steerwarm.model.load import load
from steerwarm.records import read_records
from tests.conftest import make_tiny_model, make_tokenizer
from tests.killing import run_snippet, torn

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
    finetuned, base = load(str(ck)), load(str(tiny_dir))
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert not torch.allclose(finetuned.model(input_ids=ids).logits, base.model(input_ids=ids).logits)
    assert finetuned.fingerprint != base.fingerprint
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
    """A real kill half way through logging step 8 (state saved at step 6): the rerun resumes from step 6, redoes
    steps 7 and 8, logs every step exactly once and reaches an uninterrupted run's weights."""
    corpus = tmp_path / "convs.jsonl"
    corpus.write_text("".join(json.dumps(_conv(i).to_json()) + "\n" for i in range(20)))
    script = (
        "import sys; from pathlib import Path\n"
        "import torch; torch.set_num_threads(1)\n"
        "from steerwarm.corpus.schema import read_jsonl\n"
        "from steerwarm.finetune.train import TrainConfig, train\n"
        f"cfg = TrainConfig(variant='cold', model={str(tiny_dir)!r}, epochs=3.0, checkpoints=(3.0,), batch_size=4,"
        " micro_batch=2, lr=1e-2, save_every=3)\n"
        f"r = train(cfg, Path(sys.argv[1]), convs=list(read_jsonl({str(corpus)!r})))\n"
        "print('resumed_from', r.resumed_from)\n"
    )
    run, ref = tmp_path / "killed", tmp_path / "ref"
    run_snippet(script, str(run), kill_after=8)
    assert torn(run / STEPS_LOG) and [r["step"] for r in read_records(run / STEPS_LOG)] == list(range(1, 8))
    assert json.loads((run / "state" / "trainer.json").read_text())["step"] == 6
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the killed process, so the weights can be compared exactly
    try:
        cfg = TrainConfig(variant="cold", model=str(tiny_dir), epochs=3.0, checkpoints=(3.0,), batch_size=4,
                          micro_batch=2, lr=1e-2, save_every=3)
        assert train(cfg, run, convs=[_conv(i) for i in range(20)]).resumed_from == 6
        train(cfg, ref, convs=[_conv(i) for i in range(20)])
    finally:
        torch.set_num_threads(threads)
    a = load_file(str(ref / "state" / "trainable.safetensors"))
    b = load_file(str(run / "state" / "trainable.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((run / "state" / "trainer.json").read_text())["step"] == 15
    assert read_records(run / STEPS_LOG) == read_records(ref / STEPS_LOG)  # steps 1..15, each once, same losses
    assert [r["step"] for r in read_records(run / STEPS_LOG)] == list(range(1, 16))


def test_a_model_without_a_chat_template_trains_with_one_from_a_file(tmp_path: Path) -> None:
    from steerwarm.model.chat import ChatTemplateError
    from tests.conftest import CHAT_TEMPLATE

    folder = tmp_path / "plain"
    make_tiny_model().save_pretrained(folder)
    tok = make_tokenizer()
    tok.chat_template = None
    tok.save_pretrained(folder)
    convs = [_conv(i) for i in range(4)]
    with pytest.raises(ChatTemplateError, match="--chat-template FILE"):
        train(_cfg(folder, epochs=1.0, checkpoints=(1.0,)), tmp_path / "no", convs=convs)
    (tmp_path / "chat.jinja").write_text(CHAT_TEMPLATE)
    res = train(_cfg(folder, epochs=1.0, checkpoints=(1.0,)), tmp_path / "no", convs=convs,
                chat_template=tmp_path / "chat.jinja")  # the failed start left no settings lock to trip over
    assert json.loads((tmp_path / "no" / "config.json").read_text())["chat_template_sha256"]
    assert load(str(res.checkpoints["1.0"])).tokenizer.chat_template == CHAT_TEMPLATE  # the fine-tune carries it
