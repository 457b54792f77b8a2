"""`steerwarm meter score|compare`: the warmth meter (SocioT and the p_warm classifier) on texts and on targets.

Invariant: thin: parses, calls `steerwarm.meter`, prints; a malformed input line exits 2 naming the file and line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from steerwarm.cli.options import DeviceOpt, DtypeOpt, ModelOpt, console, fail, load_model

app = typer.Typer(help="The warmth meter: score texts (SocioT, p_warm), compare targets.", no_args_is_help=True)


@app.command("score")
def score_command(
    inp: Annotated[Path, typer.Argument(help="JSONL with a `text` field per line.")],
    out: Annotated[Path, typer.Option(help="Output JSONL (input lines plus socio_t and p_warm).")],
    scorer: Annotated[str, typer.Option(help="Causal LM for SocioT (name, folder or cached hub id, e.g. gpt2).")]
    = "smollm2-135m",
    device: DeviceOpt = None,
) -> None:
    """Score texts with SocioT and p_warm; print mean and bootstrap standard error per field."""
    from steerwarm.meter.classifier import WarmthClassifier
    from steerwarm.meter.sociot import socio_t
    from steerwarm.meter.summary import summarize

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
    scores = socio_t(load_model(scorer, device=device), texts)
    for r, s, p in zip(rows, scores, WarmthClassifier.default().p_warm(texts), strict=True):
        r.update(socio_t=s, p_warm=p)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    for field in ("socio_t", "p_warm"):
        console.print(f"{field:>8}: {summarize([r[field] for r in rows])}")


@app.command("compare")
def compare_command(
    target: Annotated[list[str], typer.Option(help="base, warmth=W, finetune=NAME, prompt=warm|cold|FILE, a "
                                                   "model folder, or an endpoint; repeat.")],
    out: Annotated[Path, typer.Option(help="Output folder (responses.jsonl, summary.md); reruns resume.")],
    limit: Annotated[int | None, typer.Option(help="Only the first N validation prompts (balanced by type).")]
    = None,
    max_tokens: int = 96,
    vectors: Annotated[Path | None, typer.Option(help="Dial vectors folder for warmth=W targets.")] = None,
    model: ModelOpt = "smollm2-135m",
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = None,
) -> None:
    """Answer the validation prompts with each target and compare SocioT, p_warm and coherence (under --model)."""
    from steerwarm.meter.compare import compare
    from steerwarm.model.load import ModelNotFoundError

    try:
        table = compare(target, out, limit=limit, max_tokens=max_tokens, vectors_dir=vectors, model=model,
                        dtype=dtype, device=device)
    except (ModelNotFoundError, ValueError) as exc:
        fail(str(exc))
    t = Table(title="warmth of answers (mean ± SE)")
    for col in ("target", "SocioT", "p_warm", "base NLL"):
        t.add_column(col)
    for spec, row in table.items():
        t.add_row(spec, str(row["socio_t"]), str(row["p_warm"]), str(row["base_nll"]))
    console.print(t)
