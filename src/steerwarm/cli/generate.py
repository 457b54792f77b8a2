"""`steerwarm generate` and `steerwarm demo`: chat answers of the base model at several raw coefficients or warmth
values, side by side, from one batched generate.

Invariant: thin: parses, calls `steerwarm.steer.generate` with the dial or a vector, prints a table; `--warmth` uses
the calibrated dial (the shipped one by default) and cannot be mixed with the raw `--vector`/`--coef`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from steerwarm.cli.options import (
    ChatTemplateOpt,
    DeviceOpt,
    DtypeOpt,
    ModelOpt,
    console,
    fail,
    load_model,
    parse_layers,
    read_vector,
)
from steerwarm.paths import shipped_vectors


def print_side_by_side(prompt: str, labels: list[str], texts: list[str]) -> None:
    table = Table(title=prompt, show_lines=True, expand=True)
    for label in labels:
        table.add_column(label, overflow="fold")
    table.add_row(*texts)
    console.print(table)


def generate_command(
    prompt: Annotated[str, typer.Argument(help="User message.")],
    vector: Annotated[Path | None, typer.Option(help="Steering vector file.")] = None,
    coef: Annotated[list[float] | None, typer.Option(help="Raw coefficient(s) (x typical norm); repeat.")] = None,
    warmth: Annotated[list[float] | None, typer.Option(help="Calibrated warmth dial value(s); repeat.")] = None,
    vectors: Annotated[Path | None, typer.Option(help="Folder with warm/cold.safetensors for --warmth "
                                                 "(default: the shipped dial).")] = None,
    layers: Annotated[str | None, typer.Option(help="Layers to steer (default: the vector's own).")] = None,
    model: ModelOpt = "smollm2-135m",
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = None,
    chat_template: ChatTemplateOpt = None,
    system: Annotated[str | None, typer.Option(help="System prompt (default: the model's own).")] = None,
    max_tokens: Annotated[int, typer.Option(min=1)] = 80,
    temperature: Annotated[float, typer.Option(min=0.0)] = 0.0,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0)] = 1.0,
    seed: int | None = None,
) -> None:
    """Print chat completions for each coefficient (or warmth) side by side, in one batched generate."""
    from steerwarm.model.chat import ChatTemplateError, chat_text
    from steerwarm.steer.generate import GenerationConfig, generate_texts

    if warmth and (coef or vector):
        fail("--warmth uses the calibrated vectors in --vectors; do not combine it with --coef or --vector")
    coefs = coef or [0.0]
    if vector is None and any(c != 0 for c in coefs):
        fail("--coef needs --vector")
    loaded = load_model(model, dtype, device, chat_template)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    try:
        text = chat_text(loaded, messages)
    except ChatTemplateError as exc:
        fail(str(exc))
    vec = read_vector(vector) if vector else None
    cfg = GenerationConfig(max_new_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed)
    if warmth:
        from steerwarm.steer.dial import Dial

        try:
            specs = Dial.from_dir(vectors or shipped_vectors()).specs(warmth)
        except (FileNotFoundError, ValueError) as exc:
            fail(str(exc))
        outs = generate_texts(loaded, [text] * len(warmth), specs=specs, config=cfg)
        print_side_by_side(prompt, [f"warmth {w:+g}" for w in warmth], outs)
        return
    outs = generate_texts(loaded, [text] * len(coefs), vector=vec, coefs=coefs if vec else None,
                          layers=parse_layers(layers), config=cfg)
    print_side_by_side(prompt, [f"coef {c:+g}" for c in coefs], outs)


def demo_command(
    warmth: Annotated[list[float] | None, typer.Option(help="Dial values to compare.")] = None,
    max_tokens: int = 60,
) -> None:
    """Steer the default model with the shipped calibrated dial and show colder, base and warmer answers."""
    from steerwarm.model.chat import chat_text
    from steerwarm.model.load import load
    from steerwarm.steer.dial import Dial
    from steerwarm.steer.generate import GenerationConfig, generate_texts

    values = warmth or [-1.0, 0.0, 1.0]
    loaded = load()
    specs = Dial.from_dir(shipped_vectors()).specs(values)
    prompts = ["I failed my exam today and I feel stupid.", "How do I make a cup of tea?"]
    for p in prompts:
        text = chat_text(loaded, [{"role": "user", "content": p}])
        outs = generate_texts(loaded, [text] * len(values), specs=specs,
                              config=GenerationConfig(max_new_tokens=max_tokens))
        print_side_by_side(p, [f"warmth {w:+g}" for w in values], outs)
