"""Supervised fine-tuning of a model into its warm or cold variant (LoRA via peft, or full), resumable.

Invariants:
- Loss is computed on assistant tokens only (each assistant turn's content and its end-of-turn marker); system,
  user and template tokens are labelled -100. The mean is over all labelled tokens of the effective batch.
- The sample order is a pure function of (seed, epoch), so step k always sees the same examples; together with
  saved optimizer and RNG states this makes a run killed and resumed reach the same weights as an uninterrupted one.
- Resume state is written atomically (temporary folder, then rename) every `save_every` steps and at each
  checkpoint; a rerun with the same configuration continues from the newest state. config.json (configuration and
  data hash) is the run folder's `records.SettingsLock`: a different configuration is refused, naming every
  differing field, rather than mixed.
- `steps.jsonl` logs one line per step (step, loss, learning rate) through `records.RecordLog`, fsync'ed before each
  state save; a resumed run first drops the lines after the saved state (steps it is about to redo, and a torn
  last line), so the log always holds each step of the run exactly once.
- Each fractional-epoch checkpoint produces a merged model folder (loadable by `steerwarm.models.load`) with a
  training card (card.json, card.md, loss.png); LoRA runs also keep the small adapter (`adapter-epoch-E/`).
- Training runs under bf16 autocast on CPU with fp32 master weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from steerwarm import __version__
from steerwarm.corpus.schema import Conversation, Variant, load_corpus
from steerwarm.model.chat import chat_text
from steerwarm.model.device import input_device
from steerwarm.model.load import LoadedModel, canonical_name, load, read_chat_template
from steerwarm.paths import steerwarm_home
from steerwarm.records import RecordLog, SettingsLock, rewrite_records
from steerwarm.steer.vector import data_hash

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
STEPS_LOG = "steps.jsonl"


@dataclass(frozen=True)
class TrainConfig:
    variant: str
    method: str = "lora"
    model: str = "smollm2-135m"
    # One epoch at 3e-4 (LoRA), chosen by measurement (vectors/finetunes/README.md): at epoch 1 the warm model is warmer
    # than the base on both meters and the cold one colder; half an epoch did not yet make the warm model warmer, and
    # the paper's 1e-5 barely moves the loss in as many steps (scripts/lr_probe.py). The paper trained 8-70B models
    # for 10 epochs at 1e-5 and compared epoch 2. Both checkpoints are kept so the warmth per half epoch is measured.
    epochs: float = 1.0
    checkpoints: tuple[float, ...] = (0.5, 1.0)
    lr: float | None = None  # default: 3e-4 for LoRA, 2e-5 for full
    batch_size: int = 16
    micro_batch: int = 8
    max_length: int = 1024
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    lora_targets: tuple[str, ...] = LORA_TARGETS
    warmup_steps: int = 3
    weight_decay: float = 0.0
    seed: int = 0
    save_every: int = 5

    def __post_init__(self) -> None:
        if self.variant not in ("warm", "cold", "neutral"):
            raise ValueError(f"variant must be warm, cold or neutral, got {self.variant!r}")
        if self.method not in ("lora", "full"):
            raise ValueError(f"method must be lora or full, got {self.method!r}")
        if self.epochs <= 0 or any(c <= 0 or c > self.epochs for c in self.checkpoints):
            raise ValueError(f"checkpoints {self.checkpoints} must lie in (0, epochs={self.epochs}]")
        if self.batch_size % self.micro_batch:
            raise ValueError("batch_size must be a multiple of micro_batch")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (3e-4 if self.method == "lora" else 2e-5)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["lr"] = self.learning_rate  # effective value: an explicit default and an omitted one are the same run
        d["learning_rate"] = self.learning_rate
        return d


def default_run_dir(cfg: TrainConfig) -> Path:
    name = canonical_name(cfg.model).replace("/", "--")
    return steerwarm_home() / "finetunes" / f"{Path(name).name}-{cfg.variant}-{cfg.method}"


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]


def encode_conversation(loaded: LoadedModel, messages: Sequence[dict[str, str]], max_length: int) -> Example:
    """Token ids of a chat and labels that are -100 everywhere except assistant turns (see invariants)."""
    tok = loaded.tokenizer

    def ids_of(msgs: Sequence[dict[str, str]], gen: bool) -> list[int]:
        return list(tok(chat_text(loaded, msgs, gen), add_special_tokens=False)["input_ids"])

    input_ids: list[int] = []
    labels: list[int] = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = ids_of(messages[:i], True)
        through = ids_of(messages[: i + 1], False)
        if through[: len(before)] != before:
            raise ValueError("chat template is not prefix-stable; cannot locate assistant tokens")
        if len(before) > len(input_ids):  # user/system tokens since the last assistant turn
            labels.extend([-100] * (len(before) - len(input_ids)))
            input_ids = list(before)
        new = through[len(input_ids):]
        input_ids.extend(new)
        labels.extend(new)
    if not any(label != -100 for label in labels):
        raise ValueError("conversation has no assistant tokens")
    return Example(input_ids[:max_length], labels[:max_length])


def sample_order(n: int, epoch: int, seed: int) -> list[int]:
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> list[int]:
    """Example indices for optimizer step `step` over an endless stream of per-epoch shuffles."""
    out = []
    for pos in range(step * batch_size, (step + 1) * batch_size):
        epoch, k = divmod(pos, n)
        out.append(sample_order(n, epoch, seed)[k])
    return out


def _collate(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, : len(e.input_ids)] = torch.tensor(e.input_ids)
        labels[i, : len(e.labels)] = torch.tensor(e.labels)
        mask[i, : len(e.input_ids)] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def _token_loss_sum(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed next-token loss over labelled positions; the unembedding runs on those positions only (the
    vocabulary is 49k wide, so projecting every padded position would dominate the step)."""
    from steerwarm.model.anatomy import backbone

    base: Any = getattr(model, "get_base_model", lambda: model)()
    head: Any = base.get_output_embeddings()
    targets = batch["labels"][:, 1:]
    keep = targets != -100
    dev = input_device(base)
    with torch.autocast(dev.type, dtype=torch.bfloat16):
        hidden = backbone(base)(input_ids=batch["input_ids"].to(dev),
                                attention_mask=batch["attention_mask"].to(dev)).last_hidden_state
        logits = head(hidden[:, :-1][keep.to(hidden.device)])
    loss = torch.nn.functional.cross_entropy(logits.float(), targets[keep].to(logits.device), reduction="sum")
    return loss, int(keep.sum())


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    checkpoints: dict[str, Path] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)
    resumed_from: int = 0
    seconds: float = 0.0


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def _save_state(run_dir: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int,
                losses: list[float], cfg: TrainConfig) -> None:
    from safetensors.torch import save_file

    tmp = run_dir / f".state-tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_trainable_state(model), str(tmp / "trainable.safetensors"))
    torch.save({"optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state()}, tmp / "optimizer.pt")
    (tmp / "trainer.json").write_text(json.dumps({"step": step, "losses": losses, "config": cfg.to_json()}))
    final = run_dir / "state"
    old = run_dir / ".state-old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _build_model(cfg: TrainConfig, device: str | None = None, chat_template: Path | None = None
                 ) -> tuple[LoadedModel, torch.nn.Module]:
    # float32 master weights; the step runs under bf16 autocast
    loaded = load(cfg.model, "float32", device, chat_template)
    model: torch.nn.Module = loaded.model
    if cfg.method == "lora":
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(cfg.seed)
        model = get_peft_model(loaded.model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                        lora_dropout=cfg.lora_dropout,
                                                        target_modules=list(cfg.lora_targets), task_type="CAUSAL_LM"))
    return loaded, model


def corpus_examples(cfg: TrainConfig, loaded: LoadedModel, convs: Sequence[Conversation]) -> list[Example]:
    variant: Variant = cfg.variant  # type: ignore[assignment]
    return [encode_conversation(loaded, c.as_chat(variant), cfg.max_length) for c in convs]


def train(cfg: TrainConfig, run_dir: Path | None = None, convs: Sequence[Conversation] | None = None,
          stop_after: int | None = None, device: str | None = None, chat_template: Path | None = None
          ) -> TrainResult:
    """Fine-tune (or resume fine-tuning) and write checkpoints; `stop_after` ends early after that many steps.
    `device` (see `steerwarm.model.device`) is where the model trains; it is not part of the run's configuration,
    so a run started on one device resumes on another. `chat_template`: a template file for a model without one (it
    shapes every training example, so the run's settings lock records its hash; checkpoints save it with the
    tokenizer)."""
    start = time.perf_counter()
    run_dir = Path(run_dir) if run_dir else default_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    convs = list(convs) if convs is not None else load_corpus("train")
    variant: Variant = cfg.variant  # type: ignore[assignment]
    dhash = data_hash(json.dumps(c.as_chat(variant)) for c in convs)
    lock = SettingsLock(run_dir / "config.json", field=None,
                        hint="this folder holds a run with another configuration or data; choose another --out")
    want = json.loads(json.dumps({"config": cfg.to_json(), "data_hash": dhash}))
    if chat_template is not None:  # absent otherwise, so runs made before this option resume unchanged
        want["chat_template_sha256"] = hashlib.sha256(read_chat_template(chat_template).encode()).hexdigest()
    lock.check(want)
    loaded, model = _build_model(cfg, device, chat_template)
    examples = corpus_examples(cfg, loaded, convs)
    lock.write(want)  # only once the model loads and the examples encode: a failed start leaves no lock behind
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    n = len(examples)
    steps_per_epoch = n / cfg.batch_size
    total = max(1, math.ceil(cfg.epochs * steps_per_epoch))
    ckpt_steps = {max(1, round(e * steps_per_epoch)): e for e in cfg.checkpoints}

    step, losses = 0, []
    state = run_dir / "state"
    if (state / "trainer.json").is_file():
        from safetensors.torch import load_file

        meta = json.loads((state / "trainer.json").read_text())
        step, losses = int(meta["step"]), list(meta["losses"])
        saved = load_file(str(state / "trainable.safetensors"))
        named = dict(model.named_parameters())
        with torch.no_grad():
            for k, v in saved.items():
                named[k].copy_(v)
        extra = torch.load(state / "optimizer.pt", weights_only=False)
        opt.load_state_dict(extra["optimizer"])
        torch.set_rng_state(extra["torch_rng"])
    else:
        torch.manual_seed(cfg.seed + 1)
    result = TrainResult(run_dir=run_dir, steps=total, losses=losses, resumed_from=step)
    log = RecordLog(run_dir / STEPS_LOG)
    logged = log.read()  # a torn last line is cut off
    keep = [r for r in logged if isinstance(r.get("step"), int) and r["step"] <= step]
    if len(keep) != len(logged):  # steps after the saved state are redone: drop their lines first
        rewrite_records(log.path, keep)
    pad = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0

    model.train()
    with tqdm(total=total, initial=step, desc=f"train {cfg.variant}/{cfg.method}") as bar:
        while step < total:
            for g in opt.param_groups:
                g["lr"] = cfg.learning_rate * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
            # Length-sorted micro-batches: same examples per step, far less padding.
            idx = sorted(batch_indices(step, n, cfg.batch_size, cfg.seed), key=lambda i: len(examples[i].input_ids))
            micro = [idx[i:i + cfg.micro_batch] for i in range(0, len(idx), cfg.micro_batch)]
            batches = [_collate([examples[i] for i in m], pad) for m in micro]
            n_tokens = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
            opt.zero_grad(set_to_none=True)
            total_loss = 0.0
            for b in batches:
                loss_sum, _ = _token_loss_sum(model, b)
                (loss_sum / n_tokens).backward()  # type: ignore[no-untyped-call]
                total_loss += float(loss_sum.detach()) / n_tokens
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            losses.append(round(total_loss, 5))
            log.append({"step": step, "loss": losses[-1], "lr": opt.param_groups[0]["lr"]})
            bar.update(1)
            bar.set_postfix(loss=f"{total_loss:.3f}")
            if step in ckpt_steps:
                model.eval()
                result.checkpoints[str(ckpt_steps[step])] = _write_checkpoint(
                    cfg, run_dir, loaded, model, ckpt_steps[step], step, losses, dhash, n)
                model.train()
            if step % cfg.save_every == 0 or step in ckpt_steps or step == total:
                log.checkpoint()
                _save_state(run_dir, model, opt, step, losses, cfg)
            if stop_after is not None and step - result.resumed_from >= stop_after:
                break
    log.close()
    model.eval()
    result.seconds = time.perf_counter() - start
    for e in cfg.checkpoints:
        folder = run_dir / f"epoch-{e:g}"
        if folder.is_dir():
            result.checkpoints[str(e)] = folder
    return result


def _write_checkpoint(cfg: TrainConfig, run_dir: Path, loaded: LoadedModel, model: torch.nn.Module,
                      epoch: float, step: int, losses: list[float], dhash: str, n: int) -> Path:
    """Merged model folder + card for one fractional-epoch checkpoint (and the adapter for LoRA)."""
    folder = run_dir / f"epoch-{epoch:g}"
    tmp = run_dir / f".epoch-{epoch:g}-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if cfg.method == "lora":
        adapter = run_dir / f"adapter-epoch-{epoch:g}"
        shutil.rmtree(adapter, ignore_errors=True)
        model.save_pretrained(str(adapter))  # type: ignore[operator]
        merged: Any = merge_adapter(load(cfg.model), adapter)
        merged.save_pretrained(str(tmp))
    else:
        model.save_pretrained(str(tmp))  # type: ignore[operator]
    loaded.tokenizer.save_pretrained(str(tmp))
    write_card(tmp, cfg, epoch=epoch, step=step, losses=losses, data_hash=dhash, n_examples=n)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def merge_adapter(base: LoadedModel, adapter_dir: Path) -> torch.nn.Module:
    """The LoRA adapter merged into `base`'s weights, in place: pass a fresh load, not a model still in use."""
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(base.model, str(adapter_dir))
    merged: torch.nn.Module = peft_model.merge_and_unload()
    merged.__dict__.pop("_steerwarm_fingerprint", None)  # computed on the base weights, which the merge changed
    return merged


def write_card(folder: Path, cfg: TrainConfig, *, epoch: float, step: int, losses: list[float], data_hash: str,
               n_examples: int) -> None:
    from steerwarm.plots import pyplot, save_figure

    plt = pyplot()

    card = {
        "steerwarm_version": __version__,
        "base_model": cfg.model,
        "variant": cfg.variant,
        "method": cfg.method,
        "epoch": epoch,
        "step": step,
        "examples": n_examples,
        "data_hash": data_hash,
        "hyperparameters": cfg.to_json(),
        "final_loss": losses[-1] if losses else None,
        "losses": losses,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(losses) + 1), losses, lw=1.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("assistant-token loss")
    ax.set_title(f"{cfg.variant} {cfg.method} fine-tune of {cfg.model} (to epoch {epoch:g})")
    ax.grid(alpha=0.3)
    save_figure(fig, folder / "loss.png")
    (folder / "card.md").write_text(card_markdown(card))


def card_markdown(card: dict[str, Any]) -> str:
    """The human-readable training card, rendered from card.json's fields (with the command that reproduces it)."""
    hp = card["hyperparameters"]
    cmd = (f"steerwarm finetune train --variant {hp['variant']} --method {hp['method']} --epochs {hp['epochs']:g} "
           f"--checkpoints {','.join(f'{c:g}' for c in hp['checkpoints'])} --lr {hp['learning_rate']:g} "
           f"--batch-size {hp['batch_size']} --seed {hp['seed']}")
    shown = ", ".join(f"{k}={v}" for k, v in hp.items() if k not in ("variant", "method", "model", "lr"))
    lines = [f"# {hp['variant']} fine-tune ({hp['method']}) of {card['base_model']}, epoch {card['epoch']:g}", "",
             f"- steps: {card['step']}; examples: {card['examples']}; corpus data hash: `{card['data_hash']}`",
             f"- final training loss: {card['final_loss']}", f"- hyper-parameters: {shown}",
             f"- made by steerwarm {card['steerwarm_version']}: `{cmd}` (checkpoint epoch-{card['epoch']:g})"]
    if "merged_fingerprint" in card:
        lines.append(f"- merged model fingerprint: `{card['merged_fingerprint']}`; adapter sha256: "
                     f"`{card['adapter_sha256']}`; shipped from `{card['shipped_from']}`")
    return "\n".join([*lines, "", "![loss](loss.png)", ""])
