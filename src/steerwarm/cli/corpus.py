"""`steerwarm corpus ...`: corpus statistics and checks, and rewriting neutral conversations into warm and cold.

Thin, like the main CLI: it parses options, calls stats.py / sources.py / rewrite.py, prints.
Invariants: `stats` exits 1 when any check fails (0 otherwise; warnings do not fail); `rewrite` exits 1 when the
endpoint stopped the run (rerunning the same command resumes), 2 on bad options or input, 0 otherwise — conversations
whose rewrites failed the checks are listed in OUT's failures file, never written to OUT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from steerwarm.corpus.schema import CorpusError

app = typer.Typer(help="Warmth corpus: statistics and checks, rewriting.", no_args_is_help=True)


@app.command("stats")
def stats_command(
    files: Annotated[list[Path] | None, typer.Argument(help="Corpus JSONL files (default: the corpus folder).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Corpus folder with {split}/{query_type}.jsonl "
                                                       "(default: the shipped corpus).")] = None,
    limit: Annotated[int, typer.Option(help="Violations listed per check (0 = all).")] = 5,
) -> None:
    """Counts per type and split, length ratios, classifier agreement and every automatic check."""
    from steerwarm.corpus.stats import corpus_summary, render

    try:
        summary = corpus_summary(data_dir, files or ())
    except CorpusError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(render(summary, limit))
    raise typer.Exit(0 if summary.ok else 1)


@app.command("rewrite")
def rewrite_command(
    src: Annotated[Path, typer.Argument(metavar="IN", help="Our JSONL (neutral or plain assistant content) or "
                                                             "ShareGPT-style JSON/JSONL.")],
    out: Annotated[Path, typer.Option(help="Output JSONL (appended; rerun to resume).")],
    backend: Annotated[str, typer.Option(help="openai (any OpenAI-compatible endpoint) or rules (offline and "
                                              "deterministic, but weaker: template openers, no rewording).")],
    base_url: Annotated[str | None, typer.Option(help="Endpoint base URL, e.g. http://localhost:8000/v1.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name at the endpoint.")] = None,
    api_key_env: Annotated[str, typer.Option(help="Environment variable holding the API key.")] = "OPENAI_API_KEY",
    concurrency: Annotated[int, typer.Option(min=1, help="Conversations rewritten in parallel.")] = 4,
    max_attempts: Annotated[int, typer.Option(min=1, help="Attempts per rewrite that fails the checks.")] = 3,
    max_retries: Annotated[int, typer.Option(min=0, help="Retries per request on timeouts, 429 and 5xx.")] = 5,
    temperature: Annotated[float, typer.Option(min=0.0)] = 0.7,
    timeout: Annotated[float, typer.Option(help="Seconds per request.")] = 120.0,
    split: Annotated[str, typer.Option(help="Split written into the output conversations.")] = "train",
    retry_failed: Annotated[bool, typer.Option(help="Retry conversations recorded as failed by earlier runs.")]
    = False,
) -> None:
    """Rewrite every assistant turn of IN into warm and cold variants, validated by the corpus checks.

    Conversations whose rewrites keep failing the checks go to OUT's failures file (OUT.failed.jsonl), not to OUT.
    """
    from steerwarm.corpus.rewrite import EndpointError, make_rewriter, run_rewrite
    from steerwarm.corpus.sources import read_sources

    try:
        sources = read_sources(src)
        kwargs = ({"temperature": temperature, "timeout": timeout, "max_retries": max_retries}
                  if backend == "openai" else {})
        rewriter = make_rewriter(backend, base_url=base_url, model=model, api_key_env=api_key_env, **kwargs)
    except (CorpusError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    for note in sources.skipped:
        typer.echo(f"skipped {note}", err=True)
    try:
        report = run_rewrite(sources.conversations, rewriter, out, split=split, concurrency=concurrency,
                             max_attempts=max_attempts, retry_failed=retry_failed, progress=True)
    except EndpointError as exc:
        if exc.report is not None:
            typer.echo(exc.report.summary())
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except (CorpusError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(report.summary())
