"""`steerwarm serve`: load the model and the registered vectors, then run the OpenAI-compatible server (uvicorn).
`--engine hf` (the default) decodes with steerwarm's batching engine; `--engine vllm` serves the same API over vLLM's
engine in this process (`steerwarm.serve.vllm_engine`), when vLLM is installed.

Invariants: binds to 127.0.0.1 unless told otherwise and warns when it listens elsewhere without an API key; says
at start-up which vectors are registered, which were skipped and why, and whether the warmth dial is enabled; refuses
a bad keys file before loading the model, naming the line. SIGTERM drains (`steerwarm.serve.lifecycle`) and exits 0;
SIGHUP reloads the keys file (from start-up on: a SIGHUP while the model loads is ignored).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from steerwarm.cli.options import ChatTemplateOpt, DeviceOpt, passive_openmp
from steerwarm.paths import shipped_vectors

SERVE_SPIN = 200_000  # GOMP_SPINCOUNT for serving: best of 0 / 20,000 / 200,000 here, idle and under load
console = Console(stderr=True, soft_wrap=True)  # the server's log: stdout stays free


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_command(
    model: Annotated[str, typer.Option("--model", "-m", help="Model name, local folder or cached hub id.")]
    = "smollm2-135m",
    vectors: Annotated[Path | None, typer.Option(help="Folder of *.safetensors vectors (default: the repo's "
                                                      "vectors/). warm/cold with calibrations enable the dial.")]
    = None,
    host: Annotated[str, typer.Option(help="Interface to bind; keep 127.0.0.1 unless you set --api-key.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    api_key: Annotated[str | None, typer.Option(envvar="STEERWARM_API_KEY",
                                                help="Require 'Authorization: Bearer KEY' (or set "
                                                     "STEERWARM_API_KEY); its id is 'default'. With "
                                                     "--api-keys-file, both are accepted.")] = None,
    api_keys_file: Annotated[Path | None, typer.Option(help="Keys file: one 'ID KEY' a line, optionally followed "
                                                            "by limits 'rpm=N tpm=N' (requests and tokens per "
                                                            "minute); ids show in logs and /metrics, keys never. "
                                                            "SIGHUP reloads it.")]
    = None,
    drain_seconds: Annotated[float, typer.Option(min=0, help="On SIGTERM: new connections are refused, running "
                                                             "requests get this long to finish, then are cut with "
                                                             "an error (503 / a final error event).")] = 30.0,
    max_batch: Annotated[int, typer.Option(min=1, help="Most sequences decoded together.")] = 32,
    max_queue: Annotated[int, typer.Option(min=1, help="Most requests waiting; beyond it: 429.")] = 256,
    dtype: Annotated[str, typer.Option(help="float32 (default: batched rows equal their solo runs), bfloat16 "
                                            "(faster from about 16 rows on a CPU with AMX, but rows may differ from "
                                            "solo runs; see eval/BENCHMARK.md), float16, or auto (bfloat16 on CUDA, "
                                            "float16 on MPS, float32 on the CPU).")] = "float32",
    device: DeviceOpt = None,
    chat_template: ChatTemplateOpt = None,
    fast_kernels: Annotated[bool, typer.Option(help="float32 on the CPU: prepack linear weights for oneDNN and use "
                                                    "them for batched calls (+0.5 GB for the default model; an "
                                                    "experiment: its gain is not settled, see eval/BENCHMARK.md).")]
    = False,
    max_body_bytes: Annotated[int, typer.Option(min=1024, help="Largest request body accepted (413 beyond).")]
    = 1 << 20,
    default_max_tokens: Annotated[int, typer.Option(min=1, help="Chat max_tokens when a request sets none.")]
    = 1024,
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads (default: torch's choice).")]
    = None,
    allowed_host: Annotated[list[str] | None, typer.Option(
        help="Another Host name this server answers to (repeat), besides the bound address (and the loopback "
             "names when bound to loopback); a server bound to 0.0.0.0 answers any Host unless this is given. "
             "Other Hosts get 403 (DNS rebinding).")] = None,
    cors_origin: Annotated[list[str] | None, typer.Option(
        help="An origin allowed to call the API from a browser page (repeat; '*' for any). CORS is off without "
             "it; the playground at / is same-origin and needs none.")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
    engine_kind: Annotated[str, typer.Option("--engine", help="hf (steerwarm's batching engine) or vllm (vLLM's "
                                                             "engine in this process; needs vLLM: "
                                                             "scripts/setup-vllm).")] = "hf",
) -> None:
    """Serve the model with the warmth dial through an OpenAI-compatible API (chat, completions, streaming)."""
    # Idle OpenMP threads sleep instead of spinning (a bounded spin first): see cli.options.passive_openmp.
    # Set OMP_WAIT_POLICY / GOMP_SPINCOUNT yourself to override.
    passive_openmp(spin=SERVE_SPIN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the server handles it: reload, never die while loading
    from steerwarm.serve.keys import KeysFileError, read_keys_file  # light: a bad file fails before torch loads

    if api_keys_file is not None:
        try:
            key_ids = [k.id for k in read_keys_file(api_keys_file, api_key)]
        except KeysFileError as exc:
            console.print(f"[red]error:[/red] --api-keys-file: {escape(str(exc))}")
            raise typer.Exit(2) from None
        console.print(f"API keys from {api_keys_file}: {', '.join(key_ids)}" + (" and --api-key (default)"
                                                                                 if api_key else ""))
    import torch

    from steerwarm.model.load import ModelNotFoundError, load
    from steerwarm.serve.engine import Engine
    from steerwarm.serve.guard import GuardConfig
    from steerwarm.serve.lifecycle import run
    from steerwarm.serve.registry import SteeringRegistry
    from steerwarm.serve.routes import create_app
    from steerwarm.serve.server import ServerConfig, ServingEngine
    from steerwarm.serve.vllm_engine import INSTALL_HINT, VllmEngine, vllm_available

    if engine_kind not in ("hf", "vllm"):
        console.print(f"[red]error:[/red] --engine must be hf or vllm, got {engine_kind!r}")
        raise typer.Exit(2)
    if engine_kind == "vllm" and not vllm_available():
        console.print(f"[red]error:[/red] --engine vllm: {escape(INSTALL_HINT)}")
        raise typer.Exit(2)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if threads is not None:
        torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    explicit = vectors is not None
    if vectors is None:
        vectors = shipped_vectors()
    if not _loopback(host) and not api_key and api_keys_file is None:
        console.print(f"[yellow]warning:[/yellow] listening on {host} without --api-key: anyone who can reach "
                      "this port can use the model")
    engine: ServingEngine
    try:
        if engine_kind == "vllm":
            vengine = VllmEngine.create(model, vectors if explicit or vectors.is_dir() else None, dtype=dtype,
                                        device=device, chat_template=chat_template, max_batch=max_batch,
                                        max_queue=max_queue)
            engine, loaded, registry = vengine, vengine.loaded, vengine.registry
            where, note = f"{vengine.dtype}, {vengine.device}", vengine.kernels_note
        else:
            loaded = load(model, dtype, device, chat_template)
            registry = SteeringRegistry.from_dir(vectors if explicit or vectors.is_dir() else None, loaded)
            hf = Engine(loaded, registry, max_batch=max_batch, max_queue=max_queue, fast_kernels=fast_kernels)
            engine, where, note = hf, f"{loaded.model.dtype}, {hf.device}", hf.kernels_note
    except (ModelNotFoundError, FileNotFoundError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    app = create_app(engine, ServerConfig(model_name=loaded.name, api_key=api_key, api_keys_file=api_keys_file,
                                          max_body_bytes=max_body_bytes, default_max_tokens=default_max_tokens),
                     guard=GuardConfig(bind=host, allowed_hosts=tuple(allowed_host or ()),
                                       cors_origins=tuple(cors_origin or ())))
    console.print(f"model {loaded.name} ({loaded.fingerprint}, {where}, context {engine.context_length})")
    names = ", ".join(f"{k} (layers {v.layers})" for k, v in sorted(registry.vectors.items())) or "none"
    console.print(f"vectors from {vectors}: {names}")
    for name, why in sorted(registry.skipped.items()):
        console.print(f"  skipped {name}: {why}")
    console.print(registry.dial_note)
    console.print(note)
    console.print(f"serving on http://{host}:{port}/v1 (max batch {max_batch}, queue {max_queue}, "
                  f"API key {'required' if api_key or api_keys_file else 'off'}, drain {drain_seconds:g} s)")
    run(app, host=host, port=port, log_level=log_level, drain_seconds=drain_seconds)
