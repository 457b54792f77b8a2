"""`steerwarm finetune ...`: ship a training run's final LoRA adapter into git, and materialise shipped fine-tunes.

Thin: parses, calls steerwarm.finetunes, prints. Exit 1 with the reason on a missing or mismatched adapter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Shipped warm and cold fine-tunes (LoRA adapters in vectors/sft/).", no_args_is_help=True)


@app.command("ship")
def ship_command(
    variant: Annotated[str, typer.Argument(help="warm or cold.")],
    run: Annotated[Path | None, typer.Option(help="Training run folder (default: the default run of VARIANT).")]
    = None,
    epoch: Annotated[float, typer.Option(help="Checkpoint (fractional epoch) whose adapter to ship.")] = 2.0,
) -> None:
    """Copy a LoRA checkpoint's adapter and card into vectors/sft/VARIANT/ (with the merged model's fingerprint)."""
    from steerwarm.finetune.shipped import ShippedFinetuneError, ship
    from steerwarm.finetune.train import TrainConfig, default_run_dir

    try:
        dest = ship(run or default_run_dir(TrainConfig(variant=variant)), epoch, variant)
    except (ShippedFinetuneError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"shipped {variant} epoch {epoch:g} -> {dest}")


@app.command("prepare")
def prepare_command(
    variants: Annotated[list[str] | None, typer.Argument(help="warm and/or cold (default: both).")] = None,
) -> None:
    """Merge the shipped adapters into the base model (once; verified by fingerprint) and print the folders."""
    from steerwarm.finetune.shipped import VARIANTS, ShippedFinetuneError, materialize

    for variant in variants or list(VARIANTS):
        try:
            typer.echo(f"{variant}: {materialize(variant)}")
        except (ShippedFinetuneError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
