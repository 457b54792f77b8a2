"""`steerwarm model prepare|info`: prepare the embedded default model or a local GGUF file offline; describe any model.

Invariant: thin: each command parses, calls `steerwarm.model.load`, prints; a missing model exits 2 with the message
naming the command that prepares it.
"""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer

from steerwarm.cli.options import DeviceOpt, DtypeOpt, console, fail, load_model

app = typer.Typer(help="Prepare and inspect models.", no_args_is_help=True)


@app.command("prepare")
def prepare_command(
    model: Annotated[str, typer.Argument(
        help="Embedded model name, or a local GGUF file (PATH.gguf) to convert.")] = "smollm2-135m",
    name: Annotated[str | None, typer.Option(
        help="Name of a GGUF file's prepared model (default: a slug of the file name); pass it as --model.")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild (or replace) even if a verified copy exists.")] = False,
) -> None:
    """Convert the embedded GGUF model, or any local GGUF file, into a verified safetensors folder (offline,
    idempotent); afterwards --model NAME loads it everywhere."""
    from steerwarm.model.load import ModelNotFoundError, prepare

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        res = prepare(model, force=force, name=name)
    except ModelNotFoundError as exc:
        fail(str(exc))
    verb = "prepared" if res.created else "already prepared"
    console.print(f"{res.path.name}: {verb} at {res.path} (fingerprint {res.fingerprint}, {res.seconds:.1f}s); "
                  f"use --model {res.path.name}")


@app.command("info")
def info_command(
    name: Annotated[str, typer.Argument(help="Model name, local folder or cached hub id.")] = "smollm2-135m",
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print architecture, layers, hidden size, dtype, device and fingerprint of a model."""
    from steerwarm.model.load import describe

    info = describe(load_model(name, dtype, device))
    if as_json:
        print(json.dumps(info, indent=2))
        return
    for k, v in info.items():
        console.print(f"{k:>16}: {v}")
