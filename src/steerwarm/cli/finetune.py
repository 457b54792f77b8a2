"""`steerwarm finetune train|prepare|ship`: fine-tune the model on the corpus's warm or cold variants, merge the
shipped fine-tunes (LoRA adapters in vectors/finetunes/), ship a training run's adapter into git.

Thin: parses, calls steerwarm.finetune, prints. Exit 1 with the reason on a missing or mismatched adapter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from steerwarm.cli.options import ChatTemplateOpt, DeviceOpt, ModelOpt, console, fail

app = typer.Typer(help="Warm and cold fine-tunes: train, prepare the shipped ones (vectors/finetunes/), ship.",
                  no_args_is_help=True)


@app.command("train")
def train_command(
    variant: Annotated[str, typer.Option(help="warm or cold (neutral for a control).")],
    method: Annotated[str, typer.Option(help="lora or full.")] = "lora",
    model: ModelOpt = "smollm2-135m",
    epochs: Annotated[float, typer.Option(min=0.01)] = 1.0,
    checkpoints: Annotated[str, typer.Option(help="Fractional epochs to checkpoint at, e.g. 0.5,1,2.")] = "0.5,1",
    lr: Annotated[float | None, typer.Option(help="Learning rate (default 3e-4 LoRA, 2e-5 full).")] = None,
    batch_size: int = 16,
    micro_batch: int = 8,
    seed: int = 0,
    out: Annotated[Path | None, typer.Option(help="Run folder (default under $STEERWARM_HOME/finetunes).")] = None,
    device: DeviceOpt = None,
    chat_template: ChatTemplateOpt = None,
) -> None:
    """Fine-tune the model on the corpus's warm (or cold) variants; resumes when rerun after a kill (on any
    device: the device is not part of the run's configuration). Float32 weights, bfloat16 autocast."""
    from steerwarm.finetune.train import TrainConfig, train
    from steerwarm.model.load import ModelNotFoundError

    try:
        cfg = TrainConfig(variant=variant, method=method, model=model, epochs=epochs, lr=lr, batch_size=batch_size,
                          micro_batch=micro_batch, seed=seed,
                          checkpoints=tuple(float(x) for x in checkpoints.split(",") if x.strip()))
        res = train(cfg, out, device=device, chat_template=chat_template)
    except (ModelNotFoundError, ValueError) as exc:
        fail(str(exc))
    console.print(f"run folder {res.run_dir}: {res.steps} steps (resumed at {res.resumed_from}), "
                  f"{res.seconds / 60:.1f} min, final loss {res.losses[-1] if res.losses else float('nan'):.3f}")
    for epoch, path in sorted(res.checkpoints.items(), key=lambda kv: float(kv[0])):
        console.print(f"  epoch {epoch}: {path}")


@app.command("ship")
def ship_command(
    variant: Annotated[str, typer.Argument(help="warm or cold (the run's variant).")],
    run: Annotated[Path | None, typer.Option(help="Training run folder (default: the default run of VARIANT).")]
    = None,
    epoch: Annotated[float, typer.Option(help="Checkpoint (fractional epoch) whose adapter to ship.")] = 2.0,
) -> None:
    """Copy a LoRA checkpoint's adapter and card into vectors/finetunes/NAME/ (with the merged model's
    fingerprint): NAME is VARIANT at epoch 1, VARIANT-epoch2 at epoch 2."""
    from steerwarm.finetune.shipped import ShippedFinetuneError, ship
    from steerwarm.finetune.train import TrainConfig, default_run_dir

    try:
        dest = ship(run or default_run_dir(TrainConfig(variant=variant)), epoch, variant)
    except (ShippedFinetuneError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"shipped {variant} epoch {epoch:g} as {dest.name} -> {dest}")


@app.command("prepare")
def prepare_command(
    variants: Annotated[list[str] | None, typer.Argument(
        help="Shipped names: warm, cold, warm-epoch2, cold-epoch2 (default: every one shipped).")] = None,
) -> None:
    """Merge the shipped adapters into the base model (once; verified by fingerprint) and print the folders."""
    from steerwarm.finetune.shipped import ShippedFinetuneError, materialize, present

    for variant in variants or present():
        try:
            typer.echo(f"{variant}: {materialize(variant)}")
        except (ShippedFinetuneError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
