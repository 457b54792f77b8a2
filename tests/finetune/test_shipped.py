"""Shipped fine-tunes on the tiny model: ship a LoRA checkpoint, merge it back verified, resolve target names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from steerwarm.finetune.shipped import (
    SHIPPED,
    VARIANTS,
    ShippedFinetuneError,
    materialize,
    present,
    resolve_finetune,
    ship,
    shipped_dir,
    shipped_name,
)
from steerwarm.finetune.train import TrainConfig, train
from steerwarm.model.load import load
from tests.finetune.test_train import _conv, tiny_dir  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]


def test_ship_then_materialize_reproduces_the_checkpoint(tiny_dir: Path, tmp_path: Path,  # noqa: F811
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEERWARM_HOME", str(tmp_path / "home"))
    cfg = TrainConfig(variant="cold", model=str(tiny_dir), epochs=1.0, checkpoints=(1.0,), batch_size=4,
                      micro_batch=2, lr=1e-2)
    run = tmp_path / "run"
    train(cfg, run, convs=[_conv(i) for i in range(8)])
    with pytest.raises(ValueError, match="not warm/lora"):
        ship(run, 1.0, "warm", dest_root=tmp_path / "finetunes")
    dest = ship(run, 1.0, "cold", dest_root=tmp_path / "finetunes")
    assert sorted(p.name for p in dest.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                      "card.json", "card.md", "loss.png"]
    assert (dest / "adapter_model.safetensors").read_bytes() == \
        (run / "adapter-epoch-1" / "adapter_model.safetensors").read_bytes()
    card = json.loads((dest / "card.json").read_text())
    assert json.loads((dest / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_dir)
    assert "--variant cold --method lora --epochs 1 --checkpoints 1 --lr 0.01" in (dest / "card.md").read_text()
    checkpoint = load(str(run / "epoch-1"))
    assert card["merged_fingerprint"] == checkpoint.fingerprint

    merged_dir = materialize("cold", root=tmp_path / "finetunes")
    assert merged_dir.is_relative_to(tmp_path / "home")
    merged = load(str(merged_dir))
    assert merged.fingerprint == checkpoint.fingerprint
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        assert torch.allclose(merged.model(input_ids=ids).logits, checkpoint.model(input_ids=ids).logits, atol=1e-5)
    stamp = (merged_dir / "config.json").stat().st_mtime_ns
    assert materialize("cold", root=tmp_path / "finetunes") == merged_dir  # reused, not rebuilt
    assert (merged_dir / "config.json").stat().st_mtime_ns == stamp

    card["merged_fingerprint"] = "sw1-000000000000000000000000"
    (dest / "card.json").write_text(json.dumps(card))
    (merged_dir / "config.json").unlink()
    with pytest.raises(ValueError, match="sw1-000000000000000000000000"):
        materialize("cold", root=tmp_path / "finetunes")


def test_missing_shipped_adapter_names_the_commands(tmp_path: Path) -> None:
    with pytest.raises(ShippedFinetuneError, match="steerwarm finetune train --variant warm"):
        materialize("warm", root=tmp_path)
    with pytest.raises(ShippedFinetuneError, match="steerwarm finetune ship cold --epoch 2"):
        materialize("cold-epoch2", root=tmp_path)
    with pytest.raises(ValueError, match="warm"):
        materialize("lukewarm", root=tmp_path)


def test_shipped_names_map_variant_and_epoch_both_ways() -> None:
    assert [shipped_name(v, e) for v, e in [("warm", 1.0), ("cold", 1), ("warm", 2.0), ("cold", 2)]] == \
        ["warm", "cold", "warm-epoch2", "cold-epoch2"] == list(VARIANTS)
    for variant, epoch in [("warm", 0.5), ("cold", 3.0), ("neutral", 1.0)]:
        with pytest.raises(ValueError, match="has no shipped name"):
            shipped_name(variant, epoch)


def test_ship_at_epoch_2_goes_beside_epoch_1_and_a_mislabelled_card_is_refused(
        tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("STEERWARM_HOME", str(tmp_path / "home"))
    cfg = TrainConfig(variant="warm", model=str(tiny_dir), epochs=2.0, checkpoints=(1.0, 2.0), batch_size=4,
                      micro_batch=2, lr=1e-2)
    run = tmp_path / "run"
    train(cfg, run, convs=[_conv(i) for i in range(8)])
    root = tmp_path / "finetunes"
    one, two = ship(run, 1.0, "warm", dest_root=root), ship(run, 2.0, "warm", dest_root=root)
    assert (one.name, two.name) == ("warm", "warm-epoch2")
    assert json.loads((two / "card.json").read_text())["epoch"] == 2.0
    merged_one, merged_two = materialize("warm", root=root), materialize("warm-epoch2", root=root)
    assert load(str(merged_two)).fingerprint == load(str(run / "epoch-2")).fingerprint != \
        load(str(merged_one)).fingerprint
    # a card that says epoch 1 in the epoch-2 folder is refused, not merged under the wrong name
    (shipped_dir("cold-epoch2", root)).mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors", "card.json"):
        (shipped_dir("cold-epoch2", root) / name).write_bytes((root / "warm" / name).read_bytes())
    with pytest.raises(ValueError, match=re.escape("warm epoch 1.0, but cold-epoch2 is cold epoch 2")):
        materialize("cold-epoch2", root=root)


def test_resolve_finetune_passes_model_folders_and_refuses_others(tiny_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    assert resolve_finetune(str(tiny_dir)) == tiny_dir
    with pytest.raises(FileNotFoundError, match=re.escape(
            "neither a shipped fine-tune (warm, cold, warm-epoch2, cold-epoch2) nor a model folder")):
        resolve_finetune(str(tmp_path / "nowhere"))


def test_the_repository_ships_these_fine_tunes() -> None:
    assert present() == ["warm", "cold", "warm-epoch2", "cold-epoch2"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["warm", "cold", "warm-epoch2", "cold-epoch2"])
def test_shipped_adapters_merge_into_the_recorded_models(name: str) -> None:
    card = json.loads((ROOT / "vectors" / "finetunes" / name / "card.json").read_text())
    assert (card["variant"], card["epoch"]) == SHIPPED[name]
    assert card["base_model"] == "smollm2-135m" and card["method"] == "lora"
    merged = load(str(resolve_finetune(name)))  # materialize verifies the fingerprint before it keeps the folder
    assert merged.fingerprint == card["merged_fingerprint"] != load().fingerprint
