"""Shipped fine-tunes: the warm and cold LoRA adapters of the default model, kept in git, and merged on demand.

A fresh clone reproduces the fine-tuned models without training: `vectors/finetunes/{name}/` holds one checkpoint's
LoRA adapter of `steerwarm finetune train --variant {variant}` (adapter_config.json, adapter_model.safetensors) with
its training card (card.json, card.md, loss.png) and the fingerprint of the merged model it produced. The shipped
names (`SHIPPED`): `warm` and `cold` are epoch 1 (the dial's calibration reference), `warm-epoch2` and `cold-epoch2`
epoch 2 (the paper's main comparison point); `shipped_name(variant, epoch)` is the one naming rule, and `present()`
lists the names whose adapter the folder holds (a valid name not shipped yet is an error naming the commands).

Invariants:
- `ship` copies an adapter's weights from a training run unchanged (fp32, byte for byte), its config with the base
  model named instead of a local cache path, and its card with the merged model's fingerprint added.
- `materialize` merges a shipped adapter into the base model once, into
  `$STEERWARM_HOME/finetunes/shipped/{variant}-{adapter hash}`, written to a temporary folder and renamed only after
  the merged model's fingerprint equals the one recorded at shipping time; a later call reuses the folder. A
  changed adapter file has another hash, so it never reuses a stale merge.
- A shipped folder's card names the variant and epoch its name says (`ship` refuses anything else), so `warm-epoch2`
  is always the warm run's epoch-2 checkpoint.
- `resolve_finetune` names one model folder: a name in `VARIANTS` is a shipped fine-tune, anything else must be an
  existing model folder (a training checkpoint such as `.../epoch-2`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from steerwarm.model.load import file_sha256
from steerwarm.paths import shipped_finetunes, steerwarm_home

# shipped name -> (training variant, epoch of its checkpoint)
SHIPPED: dict[str, tuple[str, float]] = {"warm": ("warm", 1.0), "cold": ("cold", 1.0),
                                         "warm-epoch2": ("warm", 2.0), "cold-epoch2": ("cold", 2.0)}
VARIANTS = tuple(SHIPPED)
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


class ShippedFinetuneError(FileNotFoundError):
    pass


def shipped_name(variant: str, epoch: float) -> str:
    """The shipped name of checkpoint `epoch` of the `variant` run: the bare variant at epoch 1, else
    `{variant}-epoch{epoch}`; refused unless it is one of `VARIANTS`."""
    name = variant if epoch == 1 else f"{variant}-epoch{epoch:g}"
    if SHIPPED.get(name) != (variant, epoch):
        shipped = ", ".join(f"{n} ({v} epoch {e:g})" for n, (v, e) in SHIPPED.items())
        raise ValueError(f"{variant} epoch {epoch:g} has no shipped name; shipped fine-tunes are {shipped}")
    return name


def present(root: Path | None = None) -> list[str]:
    """The names of `VARIANTS` whose adapter is in the shipped folder (a name may be valid but not shipped yet)."""
    return [n for n in VARIANTS if all((shipped_dir(n, root) / f).is_file() for f in ADAPTER_FILES)]


def shipped_dir(name: str, root: Path | None = None) -> Path:
    if name not in VARIANTS:
        raise ValueError(f"shipped fine-tunes are {', '.join(VARIANTS)}, got {name!r}")
    return (root or shipped_finetunes()) / name


def read_card(folder: Path) -> dict[str, Any]:
    card = folder / "card.json"
    if not card.is_file():
        raise ShippedFinetuneError(f"{card} is missing")
    data: dict[str, Any] = json.loads(card.read_text())
    return data


def ship(run_dir: Path, epoch: float, variant: str, dest_root: Path | None = None) -> Path:
    """Copy the LoRA adapter of checkpoint `epoch` of a training run, with its card, into the shipped folder
    `shipped_name(variant, epoch)`."""
    from steerwarm.finetune.train import card_markdown
    from steerwarm.model.load import fingerprint, load

    run_dir = Path(run_dir)
    adapter = run_dir / f"adapter-epoch-{epoch:g}"
    merged = run_dir / f"epoch-{epoch:g}"
    for need in [adapter / f for f in ADAPTER_FILES] + [merged / "card.json", merged / "loss.png"]:
        if not need.is_file():
            raise ShippedFinetuneError(f"{need} is missing: is {run_dir} a finished LoRA run with epoch {epoch:g}?")
    card = read_card(merged)
    if card.get("variant") != variant or card.get("method") != "lora":
        raise ValueError(f"{merged} is a {card.get('variant')}/{card.get('method')} checkpoint, not {variant}/lora")
    dest = shipped_dir(shipped_name(variant, epoch), dest_root)
    tmp = dest.with_name(f".{dest.name}-tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy2(adapter / "adapter_model.safetensors", tmp / "adapter_model.safetensors")
    adapter_cfg = json.loads((adapter / "adapter_config.json").read_text())
    adapter_cfg["base_model_name_or_path"] = card["base_model"]  # a model name, not this machine's cache path
    (tmp / "adapter_config.json").write_text(json.dumps(adapter_cfg, indent=2) + "\n")
    shutil.copy2(merged / "loss.png", tmp / "loss.png")
    card["merged_fingerprint"] = fingerprint(load(str(merged)).model)
    card["adapter_sha256"] = file_sha256(tmp / "adapter_model.safetensors")
    card["shipped_from"] = f"{run_dir.name}/adapter-epoch-{epoch:g}"
    (tmp / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    (tmp / "card.md").write_text(card_markdown(card))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def materialize(name: str, root: Path | None = None) -> Path:
    """The merged model folder of a shipped fine-tune, built and verified on first use (see invariants)."""
    from steerwarm.finetune.train import merge_adapter
    from steerwarm.model.load import fingerprint, load

    src = shipped_dir(name, root)
    variant, epoch = SHIPPED[name]
    for file in ADAPTER_FILES:
        if not (src / file).is_file():
            raise ShippedFinetuneError(
                f"no shipped {name} fine-tune at {src} ({file} missing): train one with `steerwarm finetune train "
                f"--variant {variant} --epochs 2 --checkpoints 0.5,1,2` and ship it with `steerwarm finetune ship "
                f"{variant} --epoch {epoch:g}`")
    card = read_card(src)
    if (card.get("variant"), card.get("epoch")) != (variant, epoch):
        raise ValueError(f"{src}/card.json is {card.get('variant')} epoch {card.get('epoch')}, but {name} is "
                         f"{variant} epoch {epoch:g}")
    digest = file_sha256(src / "adapter_model.safetensors")
    if card.get("adapter_sha256") not in (None, digest):
        raise ValueError(f"{src}/adapter_model.safetensors does not match the sha256 in its card")
    out = steerwarm_home() / "finetunes" / "shipped" / f"{name}-{digest[:12]}"
    if (out / "config.json").is_file():
        return out
    base = load(str(card.get("base_model", "smollm2-135m")))
    merged: Any = merge_adapter(base, src)
    want = card.get("merged_fingerprint")
    got = fingerprint(merged)
    if want is not None and got != want:
        raise ValueError(f"merging {src} gave fingerprint {got}, but the card records {want}")
    tmp = out.with_name(f".{out.name}-tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(str(tmp))
    base.tokenizer.save_pretrained(str(tmp))
    shutil.copy2(src / "card.json", tmp / "card.json")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def resolve_finetune(spec: str) -> Path:
    """A shipped name (`VARIANTS`) -> the shipped fine-tune's merged folder; otherwise an existing model folder."""
    if spec in VARIANTS:
        return materialize(spec)
    path = Path(spec).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{spec!r} is neither a shipped fine-tune ({', '.join(VARIANTS)}) nor a model folder "
                                "(no config.json there)")
    return path
