"""The steerwarm command line: one typer app, thin: it parses, calls the library, prints.

Invariant: no logic lives here that a library user would need; every command maps onto library functions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from steerwarm.cli.options import DtypeOpt, ModelOpt, console, fail, parse_layers
from steerwarm.paths import shipped_vectors

app = typer.Typer(help="Steer a language model's warmth at inference time.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
model_app = typer.Typer(help="Prepare and inspect models.", no_args_is_help=True)
extract_app = typer.Typer(help="Build steering vectors.", no_args_is_help=True)
vector_app = typer.Typer(help="Inspect and convert steering vectors.", no_args_is_help=True)
warmth_app = typer.Typer(help="Measure warmth (SocioT, embedding classifier).", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(extract_app, name="extract")
app.add_typer(vector_app, name="vector")
app.add_typer(warmth_app, name="warmth")
from steerwarm.cli.corpus import app as corpus_app; app.add_typer(corpus_app, name="corpus")  # noqa: E402, E702, I001
from steerwarm.cli.bench import app as bench_app; app.add_typer(bench_app, name="bench")  # noqa: E402, E702, I001
from steerwarm.cli.sweep import app as sweep_app; app.add_typer(sweep_app, name="sweep")  # noqa: E402, E702, I001
from steerwarm.cli.vector import register as _register_directions; _register_directions(app, extract_app)  # noqa: E402, E702, I001
from steerwarm.cli.finetune import app as finetune_app; app.add_typer(finetune_app, name="finetune")  # noqa: E402, E702, I001




@model_app.command("prepare")
def model_prepare(
    name: Annotated[str, typer.Argument(help="Embedded model to prepare.")] = "smollm2-135m",
    force: Annotated[bool, typer.Option(help="Rebuild even if a verified copy exists.")] = False,
) -> None:
    """Convert the embedded GGUF model into a verified safetensors folder (offline, idempotent)."""
    from steerwarm.model.load import ModelNotFoundError, prepare

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        res = prepare(name, force=force)
    except ModelNotFoundError as exc:
        fail(str(exc))
        return
    verb = "prepared" if res.created else "already prepared"
    console.print(f"{name}: {verb} at {res.path} (fingerprint {res.fingerprint}, {res.seconds:.1f}s)")


@model_app.command("info")
def model_info(
    name: Annotated[str, typer.Argument(help="Model name, local folder or cached hub id.")] = "smollm2-135m",
    dtype: DtypeOpt = "float32",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print architecture, layers, hidden size, dtype and fingerprint of a model."""
    from steerwarm.model.load import ModelNotFoundError, describe, load

    try:
        info = describe(load(name, dtype))
    except ModelNotFoundError as exc:
        fail(str(exc))
        return
    if as_json:
        print(json.dumps(info, indent=2))
        return
    for k, v in info.items():
        console.print(f"{k:>16}: {v}")


@extract_app.command("contrast")
def extract_contrast(
    pos: Annotated[Path, typer.Option(help="Texts of the positive side (.txt one per line, or .jsonl).")],
    neg: Annotated[Path, typer.Option(help="Texts of the negative side.")],
    out: Annotated[Path, typer.Option(help="Output .safetensors path.")],
    model: ModelOpt = "smollm2-135m",
    name: Annotated[str, typer.Option(help="Vector name.")] = "contrast",
    steer_layers: Annotated[str | None, typer.Option(help="Default layers to steer, e.g. 10-16.")] = None,
    batch_size: int = 8,
) -> None:
    """Mean-difference vector of the base model's activations on POS versus NEG texts, at every layer."""
    from steerwarm.directions.activations import read_texts
    from steerwarm.directions.aggregate import contrast_vector
    from steerwarm.model.load import load

    loaded = load(model)
    vec = contrast_vector(loaded, read_texts(pos), read_texts(neg), name=name,
                          default_layers=parse_layers(steer_layers) or (), batch_size=batch_size)
    vec.save(out)
    console.print(f"wrote {out}: {len(vec.directions)} layers, default layers {vec.layers}, "
                  f"model {vec.model_name} ({vec.model_fingerprint})")


@vector_app.command("info")
def vector_info(path: Path) -> None:
    """Print a vector's metadata."""
    from steerwarm.steer.vector import SteeringVector

    print(json.dumps(SteeringVector.load(path).metadata(), indent=2))


@vector_app.command("export-gguf")
def vector_export(path: Path, out: Path, coef: Annotated[float, typer.Option(help="Raw coefficient baked in.")] = 1.0,
                  layers: Annotated[str | None, typer.Option(help="Only these layers (default: all but 0).")] = None
                  ) -> None:
    """Write a llama.cpp control-vector GGUF (direction.N is added to the output of layer N)."""
    from steerwarm.steer.vector import SteeringVector

    vec = SteeringVector.load(path)
    keep = parse_layers(layers) or [k for k in vec.directions if k != 0]
    vec.directions = {k: v for k, v in vec.directions.items() if k in keep}
    vec.norms = {k: v for k, v in vec.norms.items() if k in keep}
    vec.layers = [k for k in vec.layers if k in keep] or sorted(keep)
    vec.to_gguf(out, coef=coef)
    console.print(f"wrote {out} ({len(keep)} layers, coef {coef})")


@vector_app.command("import-gguf")
def vector_import(path: Path, out: Path, model: ModelOpt = "smollm2-135m") -> None:
    """Read a control-vector GGUF into a steerwarm vector (foreign files are bound to --model)."""
    import gguf

    from steerwarm.model.load import load
    from steerwarm.steer.vector import GGUF_META_KEY, SteeringVector

    if GGUF_META_KEY in gguf.GGUFReader(str(path)).fields:
        vec = SteeringVector.from_gguf(path)
    else:
        loaded = load(model)
        vec = SteeringVector.from_gguf(path, model_fingerprint=loaded.fingerprint, model_name=loaded.name)
    vec.save(out)
    console.print(f"wrote {out} ({len(vec.directions)} layers)")


def _print_side_by_side(prompt: str, labels: list[str], texts: list[str]) -> None:
    table = Table(title=prompt, show_lines=True, expand=True)
    for label in labels:
        table.add_column(label, overflow="fold")
    table.add_row(*texts)
    console.print(table)


@app.command("generate")
def generate(
    prompt: Annotated[str, typer.Argument(help="User message.")],
    vector: Annotated[Path | None, typer.Option(help="Steering vector file.")] = None,
    coef: Annotated[list[float] | None, typer.Option(help="Raw coefficient(s) (x typical norm); repeat.")] = None,
    warmth: Annotated[list[float] | None, typer.Option(help="Calibrated warmth dial value(s); repeat.")] = None,
    vectors: Annotated[Path | None, typer.Option(help="Folder with warm/cold.safetensors for --warmth "
                                                 "(default: the shipped dial).")] = None,
    layers: Annotated[str | None, typer.Option(help="Layers to steer (default: the vector's own).")] = None,
    model: ModelOpt = "smollm2-135m",
    dtype: DtypeOpt = "float32",
    system: Annotated[str | None, typer.Option(help="System prompt (default: the model's own).")] = None,
    max_tokens: Annotated[int, typer.Option(min=1)] = 80,
    temperature: Annotated[float, typer.Option(min=0.0)] = 0.0,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0)] = 1.0,
    seed: int | None = None,
) -> None:
    """Print chat completions for each coefficient (or warmth) side by side, in one batched generate."""
    from steerwarm.model.chat import chat_text
    from steerwarm.model.load import load
    from steerwarm.steer.generate import GenerationConfig, generate_texts
    from steerwarm.steer.vector import SteeringVector

    if warmth and (coef or vector):
        fail("--warmth uses the calibrated vectors in --vectors; do not combine it with --coef or --vector")
    coefs = coef or [0.0]
    if vector is None and any(c != 0 for c in coefs):
        fail("--coef needs --vector")
    loaded = load(model, dtype)
    vec = SteeringVector.load(vector) if vector else None
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    text = chat_text(loaded, messages)
    cfg = GenerationConfig(max_new_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed)
    if warmth:
        from steerwarm.steer.dial import Dial

        try:
            specs = Dial.from_dir(vectors or shipped_vectors()).specs(warmth)
        except (FileNotFoundError, ValueError) as exc:
            fail(str(exc))
            return
        outs = generate_texts(loaded, [text] * len(warmth), specs=specs, config=cfg)
        _print_side_by_side(prompt, [f"warmth {w:+g}" for w in warmth], outs)
        return
    outs = generate_texts(loaded, [text] * len(coefs), vector=vec, coefs=coefs if vec else None,
                          layers=parse_layers(layers), config=cfg)
    _print_side_by_side(prompt, [f"coef {c:+g}" for c in coefs], outs)


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
) -> None:
    """Fine-tune the model on the corpus's warm (or cold) variants; resumes when rerun after a kill."""
    from steerwarm.finetune.train import TrainConfig, train

    cfg = TrainConfig(variant=variant, method=method, model=model, epochs=epochs, lr=lr, batch_size=batch_size,
                      micro_batch=micro_batch, seed=seed,
                      checkpoints=tuple(float(x) for x in checkpoints.split(",") if x.strip()))
    res = train(cfg, out)
    console.print(f"run folder {res.run_dir}: {res.steps} steps (resumed at {res.resumed_from}), "
                  f"{res.seconds / 60:.1f} min, final loss {res.losses[-1] if res.losses else float('nan'):.3f}")
    for epoch, path in sorted(res.checkpoints.items(), key=lambda kv: float(kv[0])):
        console.print(f"  epoch {epoch}: {path}")




from steerwarm.cli.serve import serve_command; app.command("serve")(serve_command)  # noqa: E402, E702, I001


@warmth_app.command("score")
def warmth_score(
    inp: Annotated[Path, typer.Argument(help="JSONL with a `text` field per line.")],
    out: Annotated[Path, typer.Option(help="Output JSONL (input lines plus socio_t and p_warm).")],
    scorer: Annotated[str, typer.Option(help="Causal LM for SocioT (name, folder or cached hub id, e.g. gpt2).")]
    = "smollm2-135m",
) -> None:
    """Score texts with SocioT and p_warm; print mean and bootstrap standard error per field."""
    from steerwarm.meter.classifier import WarmthClassifier
    from steerwarm.meter.sociot import socio_t
    from steerwarm.meter.summary import summarize
    from steerwarm.model.load import load

    rows = []
    for n, line in enumerate(inp.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row.get("text"), str):
                raise ValueError("missing string field 'text'")
        except (json.JSONDecodeError, ValueError, AttributeError) as exc:
            fail(f"{inp}:{n}: {exc}")
        rows.append(row)
    texts = [r["text"] for r in rows]
    for r, s, p in zip(rows, socio_t(load(scorer), texts), WarmthClassifier.default().p_warm(texts), strict=True):
        r.update(socio_t=s, p_warm=p)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    for field in ("socio_t", "p_warm"):
        console.print(f"{field:>8}: {summarize([r[field] for r in rows])}")


@warmth_app.command("compare")
def warmth_compare(
    target: Annotated[list[str], typer.Option(help="base, warmth=W, a checkpoint folder, or an endpoint; repeat.")],
    out: Annotated[Path, typer.Option(help="Output folder (responses.jsonl, summary.md); reruns resume.")],
    limit: Annotated[int | None, typer.Option(help="Only the first N validation prompts (balanced by type).")]
    = None,
    max_tokens: int = 96,
    vectors: Annotated[Path | None, typer.Option(help="Dial vectors folder for warmth=W targets.")] = None,
) -> None:
    """Answer the validation prompts with each target and compare SocioT, p_warm and coherence."""
    from steerwarm.meter.compare import compare

    table = compare(target, out, limit=limit, max_tokens=max_tokens, vectors_dir=vectors)
    t = Table(title="warmth of answers (mean ± SE)")
    for col in ("target", "SocioT", "p_warm", "base NLL"):
        t.add_column(col)
    for spec, row in table.items():
        t.add_row(spec, str(row["socio_t"]), str(row["p_warm"]), str(row["base_nll"]))
    console.print(t)


@app.command("demo")
def demo(
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
        _print_side_by_side(p, [f"warmth {w:+g}" for w in values], outs)


if __name__ == "__main__":
    app()
