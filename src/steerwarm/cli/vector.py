"""`steerwarm vector ...`: build, calibrate, inspect and convert steering vectors.

- `vector extract contrast|finetune|corpus|system-prompt`: directions from one source (see `steerwarm.directions`);
- `vector difference`, `vector choose-layer`, `vector calibrate`: combine, pick the layer, calibrate the dial;
- `vector provisional-dial`: a stand-in dial (linear, not measured) from one uncalibrated vector, to serve before
  `vector calibrate` has run;
- `vector card`, `vector inspect`, `vector info`: describe a vector;
- `vector export-gguf`, `vector import-gguf`: llama.cpp control vectors.

Invariant: thin: each command parses, calls `directions`, `calibrate`, `inspect`, `steer.vector` or
`serve.registry`, saves and prints; user errors exit 2 with one line (`cli.options.fail`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

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

if TYPE_CHECKING:
    from steerwarm.model.load import LoadedModel
    from steerwarm.steer.vector import SteeringVector

app = typer.Typer(help="Build, calibrate, inspect and convert steering vectors.", no_args_is_help=True)
extract_app = typer.Typer(help="Directions per layer from one source: a contrast of texts, a fine-tune, the corpus, "
                               "a system prompt.", no_args_is_help=True)
app.add_typer(extract_app, name="extract")

LimitOpt = Annotated[int | None, typer.Option(help="Only the first N validation prompts (balanced by type).")]
MaxTokOpt = Annotated[int, typer.Option("--max-tokens", min=1, help="New tokens per greedy answer.")]


def _load_finetune(spec: str, device: str | None = None, dtype: str = "float32",
                   chat_template: Path | None = None) -> tuple[LoadedModel, str]:
    """warm | cold (the shipped fine-tunes) | a model folder, placed like the base model."""
    from steerwarm.finetune.shipped import resolve_finetune

    return load_model(str(resolve_finetune(spec)), dtype, device, chat_template), spec


def _print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    from rich.table import Table

    table = Table(title=title)
    for col in header:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _saved(vec: SteeringVector, out: Path, what: str) -> None:
    vec.save(out)
    console.print(f"wrote {out}: {what}, {len(vec.directions)} layers, default layers {vec.layers}, "
                  f"model {vec.model_name} ({vec.model_fingerprint})")


@extract_app.command("contrast")
def extract_contrast(
    pos: Annotated[Path, typer.Option(help="Texts of the positive side (.txt one per line, or .jsonl).")],
    neg: Annotated[Path, typer.Option(help="Texts of the negative side.")],
    out: Annotated[Path, typer.Option(help="Output .safetensors path.")],
    model: ModelOpt = "smollm2-135m",
    device: DeviceOpt = None,
    dtype: DtypeOpt = "float32",
    chat_template: ChatTemplateOpt = None,
    name: Annotated[str, typer.Option(help="Vector name.")] = "contrast",
    steer_layers: Annotated[str | None, typer.Option(help="Default layers to steer, e.g. 10-16.")] = None,
    batch_size: int = 8,
) -> None:
    """Mean-difference vector of the base model's activations on POS versus NEG texts, at every layer."""
    from steerwarm.directions.activations import read_texts
    from steerwarm.directions.aggregate import contrast_vector

    base = load_model(model, dtype, device, chat_template)
    vec = contrast_vector(base, read_texts(pos), read_texts(neg), name=name,
                          default_layers=parse_layers(steer_layers) or (), batch_size=batch_size)
    _saved(vec, out, "contrast of POS versus NEG")


@extract_app.command("finetune")
def extract_finetune(
    finetune: Annotated[str, typer.Option(help="warm | cold (shipped fine-tunes) | a fine-tuned model folder.")],
    cache: Annotated[Path, typer.Option(help="Folder for answers and activation shards (reruns resume).")],
    out: Annotated[Path, typer.Option(help="Output .safetensors path.")],
    aggregator: Annotated[str, typer.Option(help="mean | pca | probe.")] = "mean",
    layers: Annotated[str | None, typer.Option(help="Layers to record, e.g. 5-20 (default: all).")] = None,
    steer_layers: Annotated[str | None, typer.Option(help="Default layers to steer, e.g. 15.")] = None,
    limit: LimitOpt = None,
    max_tokens: MaxTokOpt = 96,
    model: ModelOpt = "smollm2-135m",
    device: DeviceOpt = None,
    dtype: DtypeOpt = "float32",
    chat_template: ChatTemplateOpt = None,
    name: Annotated[str | None, typer.Option(help="Vector name (default finetune-FINETUNE).")] = None,
    shard_size: Annotated[int, typer.Option(min=1, help="Items per activation shard.")] = 32,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
) -> None:
    """Direction per layer from a fine-tuned model's residuals minus the base model's, on the same tokens."""
    from steerwarm.corpus.validation import validation_prompts
    from steerwarm.directions.aggregate import AGGREGATORS
    from steerwarm.directions.shards import ShardMismatchError
    from steerwarm.directions.sources import extract_finetune as run

    if aggregator not in AGGREGATORS:
        fail(f"--aggregator must be one of {', '.join(AGGREGATORS)}, got {aggregator!r}")
    base = load_model(model, dtype, device, chat_template)
    finetuned, label = _load_finetune(finetune, device, dtype, chat_template)
    try:
        vec = run(base, finetuned, validation_prompts(limit), cache, method=aggregator, layers=parse_layers(layers),
                  max_new_tokens=max_tokens, shard_size=shard_size, batch_size=batch_size,
                  name=name or f"finetune-{Path(label).name}", default_layers=parse_layers(steer_layers) or (),
                  finetune_label=label)
    except (ShardMismatchError, ValueError) as exc:
        fail(str(exc))
        return
    p = vec.provenance.params
    _saved(vec, out, f"{p['n_items']} items, {p['n_tokens']} tokens, fine-tune {label}")


@app.command("difference")
def difference_command(
    plus: Annotated[Path, typer.Argument(help="Raw model-diff vector to keep (e.g. the warm one).")],
    minus: Annotated[Path, typer.Argument(help="Raw model-diff vector to subtract (e.g. the cold one).")],
    out: Annotated[Path, typer.Option(help="Output .safetensors path.")],
    name: Annotated[str | None, typer.Option(help="Vector name (default PLUS-minus-MINUS).")] = None,
) -> None:
    """Direction of (plus - base) - (minus - base) per layer: what two fine-tunes do differently."""
    from steerwarm.directions.sources import difference_vector

    a, b = read_vector(plus), read_vector(minus)
    try:
        vec = difference_vector(a, b, name=name or f"{a.name}-minus-{b.name}")
    except ValueError as exc:
        fail(str(exc))
        return
    _saved(vec, out, f"{a.name} minus {b.name}")


def _contrast_command(source: str, default_name: str, doc: str) -> Callable[..., None]:
    """A `vector extract` command for one base-model contrast source: corpus or system-prompt."""

    def command(
        out: Annotated[Path, typer.Option(help="Output .safetensors path.")],
        limit: Annotated[int | None, typer.Option(help="Only N train conversations (balanced by type).")] = None,
        steer_layers: Annotated[str | None, typer.Option(help="Default layers to steer.")] = None,
        model: ModelOpt = "smollm2-135m",
        device: DeviceOpt = None,
        dtype: DtypeOpt = "float32",
        chat_template: ChatTemplateOpt = None,
        name: str = default_name,
        batch_size: Annotated[int, typer.Option(min=1)] = 8,
    ) -> None:
        from steerwarm.directions.aggregate import contrast_vector
        from steerwarm.directions.sources import COLD_SYSTEM, WARM_SYSTEM, corpus_contrast_items, system_prompt_items

        params: dict[str, Any] = {"split": "train"}
        if source == "corpus":
            warm, cold = corpus_contrast_items("train", limit)
            params["turn"] = "first exchange"
        else:
            warm, cold = system_prompt_items("train", limit)
            params.update(answers="neutral", warm_system=WARM_SYSTEM, cold_system=COLD_SYSTEM)
        base = load_model(model, dtype, device, chat_template)
        vec = contrast_vector(base, warm, cold, name=name, default_layers=parse_layers(steer_layers) or (),
                              batch_size=batch_size, method=f"{source}-contrast", params=params)
        _saved(vec, out, f"{len(warm)} warm / {len(cold)} cold items")

    command.__doc__ = doc
    return command


extract_app.command("corpus")(_contrast_command(
    "corpus", "corpus-contrast", "Contrast of the base model's activations on the corpus's warm versus cold answers."))
extract_app.command("system-prompt")(_contrast_command(
    "system-prompt", "system-prompt-contrast",
    "Contrast of the base model on the same neutral answers under a warm versus a cold system prompt."))


@app.command("choose-layer")
def choose_layer_command(
    vector: Annotated[Path, typer.Argument(help="Vector file.")],
    out: Annotated[Path, typer.Option(help="Output vector (default layer set, table in metadata).")],
    layers: Annotated[str | None, typer.Option(help="Candidate layers (default: all the vector has).")] = None,
    rel_coef: Annotated[float, typer.Option(help="Raw coefficient (x typical norm) for every layer.")] = 0.4,
    nll_cap: Annotated[float, typer.Option(help="Largest NLL increase (nats/token) allowed.")] = 0.5,
    sense: Annotated[str, typer.Option(help="warm: gain = p_warm up; cold: gain = p_warm down.")] = "warm",
    limit: LimitOpt = 24,
    max_tokens: MaxTokOpt = 64,
    cache: Annotated[Path | None, typer.Option(help="Folder for the answer log (reruns resume).")] = None,
    model: ModelOpt = "smollm2-135m",
    device: DeviceOpt = None,
    dtype: DtypeOpt = "float32",
    chat_template: ChatTemplateOpt = None,
) -> None:
    """Steer each candidate layer at one relative strength; keep the layer with the best warmth gain under a cap."""
    from steerwarm.calibrate.dial import CalibrationError
    from steerwarm.calibrate.layer import choose_layer as pick
    from steerwarm.calibrate.layer import layer_table, store_layer_choice
    from steerwarm.corpus.validation import validation_prompts
    from steerwarm.meter.measure import Meter
    from steerwarm.steer.answers import AnswerLog

    if sense not in ("warm", "cold"):
        fail(f"--sense must be warm or cold, got {sense!r}")
    vec = read_vector(vector)
    base_model = load_model(model, dtype, device, chat_template)
    vec.check_model(base_model.fingerprint)
    sign = 1 if sense == "warm" else -1
    log = AnswerLog(cache / "answers.jsonl" if cache else None)
    base, rows = layer_table(base_model, vec, validation_prompts(limit), parse_layers(layers) or sorted(vec.directions),
                             Meter.default(base_model), log, rel_coef=rel_coef, sense=sign, max_new_tokens=max_tokens)
    _print_table(f"layers at coef {rel_coef} (base p_warm {base.p_warm}, NLL {base.nll})",
                 ("layer", "p_warm", "gain", "NLL", "NLL increase"),
                 [(str(r.layer), f"{r.p_warm:.3f} ± {r.p_warm_se:.3f}", f"{r.gain:+.3f}", f"{r.nll:.3f}",
                   f"{r.nll_increase:+.3f}") for r in rows])
    try:
        chosen = pick(rows, nll_cap)
    except CalibrationError as exc:
        fail(str(exc))
        return
    store_layer_choice(vec, base, rows, chosen, nll_cap, sign)
    _saved(vec, out, f"chose layer {chosen.layer} (gain {chosen.gain:+.3f}, NLL {chosen.nll_increase:+.3f})")


@app.command("calibrate")
def calibrate_command(
    vector: Annotated[Path, typer.Argument(help="Vector file (its default layers are steered).")],
    finetune: Annotated[str, typer.Option(help="The fine-tune that sets dial 1: warm | cold (shipped fine-tunes) | "
                                               "a fine-tuned model folder.")],
    out: Annotated[Path, typer.Option(help="Output calibrated vector.")],
    coefs: Annotated[str, typer.Option(help="Raw coefficients to measure, comma-separated (0 is added).")]
    = "0.1,0.2,0.3,0.4,0.5,0.6,0.8",
    layers: Annotated[str | None, typer.Option(help="Layers to steer (default: the vector's own).")] = None,
    limit: LimitOpt = 48,
    max_tokens: MaxTokOpt = 64,
    cache: Annotated[Path | None, typer.Option(help="Folder for the answer log (reruns resume).")] = None,
    model: ModelOpt = "smollm2-135m",
    device: DeviceOpt = None,
    dtype: DtypeOpt = "float32",
    chat_template: ChatTemplateOpt = None,
) -> None:
    """Map the warmth dial to raw coefficients: dial 1 = as warm (or cold) as the fine-tune's answers."""
    from steerwarm.calibrate.dial import CalibrationError, apply_calibration, fit_calibration
    from steerwarm.corpus.validation import validation_prompts
    from steerwarm.meter.measure import Meter, measure_curve, measure_finetune
    from steerwarm.steer.answers import AnswerLog

    try:
        grid = [float(c) for c in coefs.split(",") if c.strip()]
    except ValueError:
        fail(f"--coefs must be comma-separated numbers, got {coefs!r}")
        return
    vec = read_vector(vector)
    base_model = load_model(model, dtype, device, chat_template)
    vec.check_model(base_model.fingerprint)
    finetuned, label = _load_finetune(finetune, device, dtype, chat_template)
    prompts = validation_prompts(limit)
    meter = Meter.default(base_model)
    log = AnswerLog(cache / "answers.jsonl" if cache else None)
    use = parse_layers(layers)
    ref = measure_finetune(finetuned, prompts, meter, log, label=f"finetune {label}", max_new_tokens=max_tokens)
    curve = measure_curve(base_model, vec, prompts, grid, meter, log, layers=use, max_new_tokens=max_tokens)
    _print_table(f"steered base model, {len(prompts)} prompts; fine-tune {label}: p_warm {ref.p_warm}",
                 ("coef", "p_warm", "NLL"), [(f"{m.coef or 0.0:+g}", str(m.p_warm), str(m.nll)) for m in curve])
    try:
        cal = fit_calibration(curve, ref)
    except CalibrationError as exc:
        fail(str(exc))
        return
    apply_calibration(vec, cal, ref, use)
    _saved(vec, out, "dial " + ", ".join(f"{d:+.2f}->{c:.3f}" for d, c in zip(cal.dial, cal.coef, strict=True)))


@app.command("provisional-dial")
def provisional_dial_command(
    out: Annotated[Path, typer.Argument(help="Folder to write: warm, cold and a copy of the source vector.")],
    source: Annotated[Path | None, typer.Option(help="Uncalibrated vector to make the dial from (default: the "
                                                     "shipped starter-contrast).")] = None,
    coef: Annotated[float, typer.Option(help="Raw coefficient (x typical norm) at warmth 1.")] = 0.3,
) -> None:
    """A vectors folder with a provisional warmth dial, for serving before calibrated vectors exist: warmth 1 = raw
    COEF along SOURCE, -1 = the same along its negation (linear, not measured; the calibration note says so)."""
    import shutil

    from steerwarm.paths import shipped_vectors
    from steerwarm.serve.registry import write_provisional_dial

    src = source if source is not None else shipped_vectors() / "starter-contrast.safetensors"
    vec = read_vector(src)
    if coef <= 0:
        fail(f"--coef must be positive, got {coef}")
    write_provisional_dial(vec, out, coef)
    if not (out / src.name).exists() or not (out / src.name).samefile(src):
        shutil.copy(src, out / src.name)
    console.print(f"wrote {out}: warm, cold (warmth 1 = raw {coef} on {vec.name}), {src.name}; "
                  f"serve it with `steerwarm serve --vectors {out}`")


@app.command("inspect")
def inspect_command(
    vector: Annotated[Path, typer.Argument(help="Vector file.")],
    out: Annotated[Path, typer.Option(help="Output folder (report.md and PNG plots).")],
    against: Annotated[list[Path] | None, typer.Option(help="Other vectors to compare; repeat.")] = None,
    cache: Annotated[list[Path] | None, typer.Option(help="`vector extract finetune` cache folders (probe, "
                                                         "projections).")]
    = None,
    texts: Annotated[list[str] | None, typer.Option(help="LABEL=FILE (.jsonl with prompt/text) to project.")]
    = None,
    layer: Annotated[int | None, typer.Option(help="Layer for the logit lens and projections.")] = None,
    model: ModelOpt = "smollm2-135m",
    device: DeviceOpt = None,
    dtype: DtypeOpt = "float32",
    chat_template: ChatTemplateOpt = None,
    no_model: Annotated[bool, typer.Option(help="Do not load a model (no logit lens, no text projections).")]
    = False,
) -> None:
    """Write an inspection report: norms, cosines, probe accuracy, logit lens, projections."""
    from steerwarm.directions.activations import read_texts
    from steerwarm.inspect.report import InspectInputs, inspect_vector
    from steerwarm.model.load import ModelNotFoundError, load

    vec = read_vector(vector)
    inputs = InspectInputs(vec, against={p.stem: read_vector(p) for p in against or []},
                           caches=list(cache or []), layer=layer)
    for spec in texts or []:
        label, sep, path = spec.partition("=")
        if not sep:
            fail(f"--texts wants LABEL=FILE, got {spec!r}")
        try:
            inputs.texts[label] = read_texts(path)
        except (OSError, ValueError) as exc:
            fail(f"--texts {label}: {exc}")
    if no_model:
        inputs.model_error = "(--no-model)"
    else:
        try:
            loaded = load(model, dtype, device, chat_template)
            vec.check_model(loaded.fingerprint)
            inputs.model = loaded
        except (ModelNotFoundError, ValueError) as exc:
            inputs.model_error = f"({exc})"
    try:
        report = inspect_vector(inputs, out)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
        return
    console.print(f"wrote {report} and {len(list(out.glob('*.png')))} plots")


@app.command("card")
def card_command(
    vector: Annotated[Path, typer.Argument(help="Vector file.")],
    out: Annotated[Path, typer.Option(help="Output Markdown card.")],
    against: Annotated[list[str] | None, typer.Option(help="LABEL=VECTOR to compare (cosines); repeat.")] = None,
    made_by: Annotated[str, typer.Option(help="The commands that made the vector, for the card.")] = "",
) -> None:
    """Write a vector's card: provenance, layer table, calibration curve, cosines to other sources."""
    from steerwarm.inspect.card import vector_card

    others = {}
    for spec in against or []:
        label, sep, path = spec.partition("=")
        if not sep:
            fail(f"--against wants LABEL=VECTOR, got {spec!r}")
        others[label] = read_vector(path)
    out.write_text(vector_card(read_vector(vector), others, made_by=made_by), encoding="utf-8")
    console.print(f"wrote {out}")


@app.command("info")
def info_command(path: Annotated[Path, typer.Argument(help="Vector file.")]) -> None:
    """Print a vector's metadata."""

    print(json.dumps(read_vector(path).metadata(), indent=2))


@app.command("export-gguf")
def export_gguf_command(
    path: Annotated[Path, typer.Argument(help="Vector file.")],
    out: Annotated[Path, typer.Argument(help="Output .gguf path.")],
    coef: Annotated[float, typer.Option(help="Raw coefficient baked in.")] = 1.0,
    layers: Annotated[str | None, typer.Option(help="Only these layers (default: all but 0).")] = None,
) -> None:
    """Write a llama.cpp control-vector GGUF (direction.N is added to the output of layer N)."""

    vec = read_vector(path)
    keep = parse_layers(layers) or [k for k in vec.directions if k != 0]
    vec.directions = {k: v for k, v in vec.directions.items() if k in keep}
    vec.norms = {k: v for k, v in vec.norms.items() if k in keep}
    vec.layers = [k for k in vec.layers if k in keep] or sorted(keep)
    vec.to_gguf(out, coef=coef)
    console.print(f"wrote {out} ({len(keep)} layers, coef {coef})")


@app.command("import-gguf")
def import_gguf_command(
    path: Annotated[Path, typer.Argument(help="Control-vector .gguf file.")],
    out: Annotated[Path, typer.Argument(help="Output .safetensors path.")],
    model: ModelOpt = "smollm2-135m",
) -> None:
    """Read a control-vector GGUF into a steerwarm vector (foreign files are bound to --model)."""
    import gguf

    from steerwarm.steer.vector import GGUF_META_KEY, SteeringVector

    if GGUF_META_KEY in gguf.GGUFReader(str(path)).fields:
        vec = SteeringVector.from_gguf(path)
    else:
        loaded = load_model(model)
        vec = SteeringVector.from_gguf(path, model_fingerprint=loaded.fingerprint, model_name=loaded.name)
    vec.save(out)
    console.print(f"wrote {out} ({len(vec.directions)} layers)")
