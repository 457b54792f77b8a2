"""Options and helpers shared by every command group: the console, failing with a message, list parsing.

Invariant: a user error ends the command with exit code 2 and one line `error: ...` saying what was wrong and what
to do. Nothing here runs a model; `load_model` and `read_vector` load what a command names and turn a failed load
(unknown model, missing device, bad chat template file, missing vector file) into that one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console

from steerwarm.bench import TASKS

if TYPE_CHECKING:
    from steerwarm.model.load import LoadedModel
    from steerwarm.steer.vector import SteeringVector

console = Console(emoji=False, highlight=False)  # ":anger:" in condition names is not an emoji

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model name, local folder or cached hub id.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="auto, float32, bfloat16 or float16 (auto: bfloat16 on CUDA, "
                                                  "float16 on MPS, float32 on the CPU).")]
DeviceOpt = Annotated[str | None, typer.Option(
    "--device", help="auto, cpu, cuda, cuda:N or mps (auto: the best present; several GPUs: the model spread over "
                     "all). Default: $STEERWARM_DEVICE, else cpu.")]
ChatTemplateOpt = Annotated[Path | None, typer.Option(
    "--chat-template", help="Jinja chat template file, for a model without one (or to replace its own).")]
ThreadsOpt = Annotated[int | None, typer.Option(min=1, help="torch CPU threads (default: torch's choice).")]


def fail(msg: str) -> NoReturn:
    console.print(f"[red]error:[/red] {msg}", soft_wrap=True)
    raise typer.Exit(2)


def load_model(model: str, dtype: str = "float32", device: str | None = None,
               chat_template: Path | None = None) -> LoadedModel:
    """`steerwarm.model.load.load` for a command: a model or device that cannot be had is a one-line error."""
    from steerwarm.model.load import ModelNotFoundError, load

    try:
        return load(model, dtype, device, chat_template)
    except (ModelNotFoundError, ValueError) as exc:
        fail(str(exc))


def read_vector(path: Path | str) -> SteeringVector:
    """A steering vector file for a command: a missing or unreadable file is a one-line error, not a traceback."""
    from steerwarm.steer.vector import SteeringVector

    try:
        return SteeringVector.load(path)
    except (OSError, ValueError, KeyError) as exc:
        fail(f"{path}: {exc}" if str(path) not in str(exc) else str(exc))


def parse_tasks(spec: str) -> list[str]:
    tasks = [t.strip() for t in spec.split(",") if t.strip()]
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        fail(f"--tasks: unknown task(s) {', '.join(bad) or '(none)'}; choose from {', '.join(TASKS)}")
    return tasks


def parse_items(specs: list[str] | None, tasks: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for spec in specs or []:
        task, sep, path = spec.partition("=")
        if sep and task in TASKS:
            out[task] = Path(path)
        elif len(tasks) == 1:
            out[tasks[0]] = Path(spec)
        else:
            fail(f"--items {spec!r}: with several tasks write TASK=FILE (e.g. trivia=items.jsonl)")
    for task in out:
        if task not in tasks:
            fail(f"--items given for {task}, which is not in --tasks")
    return out


def json_object(text: str | None, option: str) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{option}: invalid JSON ({exc.msg})")
    if not isinstance(value, dict):
        fail(f"{option}: must be a JSON object, e.g. '{{\"warmth\": 0.5}}'")
    return dict(value)


def passive_openmp(spin: int | None = None) -> None:
    """On a shared CPU, OpenMP threads that busy-wait between parallel regions lose most of their time to other
    processes (measured here: 2 busy-waiting threads ran a forward pass at 90-190 tok/s, passive ones at ~310).
    Ask for passive waiting unless the user chose a policy; it only takes effect before torch is first imported.

    `spin`: let a thread spin that many iterations (libgomp's GOMP_SPINCOUNT) before it sleeps. The serving engine
    runs several hundred short ops per decode step (torch's profiler: 211 matmuls, 275 multiplies, 181 adds for the
    default model), and waking a sleeping thread for each cost it 1.19-1.36x in tokens/s here (eval/BENCHMARK.md);
    a bounded spin still leaves an idle server at ~0% CPU."""
    import os
    import sys

    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        if spin is not None:
            os.environ.setdefault("GOMP_SPINCOUNT", str(spin))


def torch_threads(threads: int | None) -> None:
    """Before a long CPU job: passive OpenMP waiting (see `passive_openmp`) and, when given, torch's thread count."""
    passive_openmp()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def parse_csv(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def parse_layers(spec: str | None) -> list[int] | None:
    if not spec:
        return None
    out: list[int] = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out
