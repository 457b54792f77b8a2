"""`steerwarm bench ...`: run, compare and report the conditioned error benchmark, plan a run's size; validate the
scorers.

Invariant: thin: every command parses its options, calls the library (runner, compare, report, validate) and prints;
input problems exit with status 2 and a message naming the file, line or option at fault.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from steerwarm.bench import TASKS
from steerwarm.cli.options import (
    ChatTemplateOpt,
    DeviceOpt,
    DtypeOpt,
    ThreadsOpt,
    console,
    fail,
    json_object,
    parse_csv,
    parse_items,
    parse_tasks,
    torch_threads,
)

app = typer.Typer(help="The paper's conditioned error benchmark, for any target.", no_args_is_help=True,
                  pretty_exceptions_enable=False)

# endpoint options, shared with `steerwarm sweep run`
ApiKeyEnvOpt = Annotated[str, typer.Option(help="Environment variable holding the endpoint API key.")]
ExtraBodyOpt = Annotated[str | None, typer.Option(help="JSON object sent with every endpoint request (the "
                                                       "warmth belongs in #MODEL@warmth=W or the sweep's "
                                                       "--warmth).")]
ConcurrencyOpt = Annotated[int, typer.Option(min=1, help="Parallel endpoint requests.")]
RetriesOpt = Annotated[int, typer.Option(min=0, help="Retries per endpoint request (exponential backoff).")]














@app.command("run")
def run_cmd(
    target: Annotated[str, typer.Option(help="base | warmth=W | finetune=NAME (warm, cold, "
                                             "warm-epoch2, cold-epoch2) | prompt=warm|cold|FILE | MODEL_FOLDER | "
                                             "http://HOST:PORT/v1#MODEL")],
    out: Annotated[Path, typer.Option(help="Run folder (results.jsonl, run.json, summary.json); rerun to resume.")],
    tasks: Annotated[str, typer.Option(help="Comma-separated tasks.")] = ",".join(TASKS),
    items: Annotated[list[str] | None, typer.Option(help="Item file (TASK=FILE, or FILE with one task); repeat.")
                     ] = None,
    contexts: Annotated[Path | None, typer.Option(help="Contexts JSON (default: eval/contexts/default.json).")
                        ] = None,
    mode: Annotated[str, typer.Option(help="likelihood (judge-free) or generate.")] = "likelihood",
    limit: Annotated[int | None, typer.Option(min=1, help="First N items per task.")] = None,
    per_item: Annotated[int | None, typer.Option(min=1, help="Seeded subsample: K prompts per item, the same for "
                                                             "every target (stratified over conditions).")] = None,
    templates: Annotated[str | None, typer.Option(help="Subset of original,original_neutral,incorrect,correct.")
                         ] = None,
    conditions: Annotated[str | None, typer.Option(help="Subset of contexts, e.g. unmodified,emotion:sad.")] = None,
    seed: int = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per forward pass / per endpoint round.")] = 16,
    model: Annotated[str, typer.Option(help="Base model for base / warmth=W targets.")] = "smollm2-135m",
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = None,
    chat_template: ChatTemplateOpt = None,
    vectors: Annotated[Path | None, typer.Option(help="Dial vectors folder for warmth=W (default vectors/).")
                       ] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="Generate mode: new tokens.")] = 300,
    temperature: Annotated[float, typer.Option(min=0.0, help="Generate mode: sampling temperature.")] = 0.8,
    judge: Annotated[str | None, typer.Option(help="Generate mode: LLM judge endpoint http://HOST:PORT/v1#MODEL "
                                                   "(default: the reference matcher).")] = None,
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY",
    extra_body: ExtraBodyOpt = None,
    concurrency: ConcurrencyOpt = 4,
    retries: RetriesOpt = 5,
    tokenizer: Annotated[str | None, typer.Option(help="Endpoint likelihood: local tokenizer/chat template "
                                                       "(default: --model).")] = None,
    threads: ThreadsOpt = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Score a target on the benchmark; appends one line per prompt to OUT/results.jsonl and writes summary.json."""
    torch_threads(threads)
    from steerwarm.bench.errors import DataFileError
    from steerwarm.bench.judge import Judge
    from steerwarm.bench.runner import RunConfig, run_benchmark
    from steerwarm.model.load import ModelNotFoundError
    from steerwarm.records import SettingsMismatchError
    from steerwarm.targets.endpoint import EndpointClient, EndpointError
    from steerwarm.targets.registry import GenSettings, parse_target

    task_list = parse_tasks(tasks)
    try:
        cfg = RunConfig(tasks=task_list, out=out, mode=mode, items=parse_items(items, task_list), contexts=contexts,
                        limit=limit, seed=seed, batch_size=batch_size, per_item=per_item,
                        templates=parse_csv(templates) or RunConfig.templates, conditions=parse_csv(conditions),
                        gen=GenSettings(max_tokens=max_tokens, temperature=temperature))
        body = json_object(extra_body, "--extra-body")
        tgt = parse_target(target, model=model, dtype=dtype, device=device, chat_template=chat_template,
                           vectors_dir=vectors, api_key_env=api_key_env,
                           extra_body=body, concurrency=concurrency, retries=retries, tokenizer=tokenizer)
        judge_obj = None
        if judge:
            if mode != "generate":
                fail("--judge applies to --mode generate (likelihood mode needs no judge)")
            judge_obj = Judge(EndpointClient(judge, api_key_env=api_key_env, concurrency=concurrency,
                                             retries=retries))
        res = run_benchmark(cfg, tgt, judge=judge_obj, progress=progress)
    except (DataFileError, SettingsMismatchError, ModelNotFoundError, EndpointError, FileNotFoundError,
            ValueError, KeyError) as exc:
        fail(str(exc))
        return
    t = res.throughput
    console.print(f"{res.run_dir}: {res.total} prompts ({res.done_before} already done, {res.scored_now} now) in "
                  f"{res.seconds:.1f}s" + (f", {t['prompts_per_s']:.1f} prompts/s" if t.get("prompts_per_s")
                                           else ""))
    if t.get("raw_forward_prompts_per_s"):
        console.print(f"raw forward {t['raw_forward_prompts_per_s']:.1f} prompts/s at batch {t['batch_size']}: "
                      f"overall efficiency {t['efficiency_overall']:.0%}, same batches "
                      f"{t['efficiency_same_batches']:.0%}")
    def pct(cell: dict[str, Any]) -> str:
        return f"{100 * cell['error_rate']:.1f}%" if cell["n_scored"] else "n/a"

    for task, s in res.summary["tasks"].items():
        c = s["no_context_no_belief"]
        console.print(f"  {task:>10}: error {pct(c)} (no context, no belief, n={c['n_scored']}), "
                      f"{pct(s['all'])} overall, {pct(s['belief'])} with a belief")
    print_instrument(res.summary.get("instrument", {}))


def print_instrument(block: dict[str, Any]) -> None:
    """The instrument block of a summary (bench.instrument.run_instrument), a few lines per task."""
    from steerwarm.bench.instrument import TaskInstrument

    for rec in block.get("tasks", {}).values():
        console.print(f"  instrument {TaskInstrument.from_record(rec).line()}", soft_wrap=True)
    for m in block.get("mde", {}).get("comparison", []):
        if m["design"] in ("no context, no belief", "all prompts"):
            console.print(f"  MDE {m['task']}, {m['design']}: {m['mde_pp']:.1f} pp on {m['n_pairs']} pairs "
                          f"(80% power, 5% level; discordance {m['discordance_source']})", soft_wrap=True)
    for note in block.get("notes", []):
        console.print(f"  note: {note}", soft_wrap=True)
    known = block.get("known_items")
    if known:
        per = ", ".join(f"{t} {v['known']}/{v['items']}" for t, v in known["per_task"].items())
        console.print(f"  known items: {known['n_known']} ({per}); {known['rule']}", soft_wrap=True)


@app.command("compare")
def compare_cmd(
    run_a: Annotated[Path, typer.Argument(help="Reference run folder (the 'original').")],
    run_b: Annotated[Path, typer.Argument(help="Target run folder (warm, steered, fine-tuned).")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default RUN_B/compare-vs-RUN_A).")] = None,
) -> None:
    """Paired McNemar tests with BH FDR and Cohen's g per cell, and the paper's regressions 1-4."""
    from steerwarm.bench.compare import compare_runs, write_comparison
    from steerwarm.bench.errors import DataFileError

    for d in (run_a, run_b):
        if not (d / "results.jsonl").is_file():
            fail(f"{d} has no results.jsonl; is it a bench run folder?")
    try:
        cmp = compare_runs(run_a, run_b)
    except (DataFileError, ValueError) as exc:
        fail(str(exc))
        return
    paths = write_comparison(cmp, out or run_b / f"compare-vs-{run_a.name}")
    console.print(f"{cmp.n_pairs} paired prompts; wrote " + ", ".join(str(p) for p in paths.values()))
    from steerwarm.bench.instrument import TaskInstrument

    for name, checks in cmp.instrument.items():
        for rec in checks:
            console.print(f"  instrument {name}, {TaskInstrument.from_record(rec).line()}", soft_wrap=True)
    scopes = [("all items", cmp)]
    if cmp.known_comparison is not None and cmp.known is not None:
        scopes.append((f"known items ({cmp.known['n_known']})", cmp.known_comparison))
    for scope, c in scopes:
        for r in c.regressions:
            effects = ", ".join(f"{e.level}: {100 * e.ame:+.2f} pp (p={e.p_value:.3g})" for e in r.effects)
            console.print(f"  {scope}, {r.name}: {effects or r.error}")


@app.command("report")
def report_cmd(
    runs: Annotated[list[Path], typer.Argument(help="Run folders; the first is the reference unless --reference.")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default FIRST_RUN/report).")] = None,
    reference: Annotated[int, typer.Option(min=0, help="Index of the reference run among RUNS.")] = 0,
) -> None:
    """Markdown tables in the paper's layout (per task, per context, belief vs none, delta vs reference) + PNG."""
    from steerwarm.bench.errors import DataFileError
    from steerwarm.bench.report import write_report

    for d in runs:
        if not (d / "results.jsonl").is_file():
            fail(f"{d} has no results.jsonl; is it a bench run folder?")
    try:
        paths = write_report(runs, out or runs[0] / "report", reference)
    except (DataFileError, ValueError) as exc:
        fail(str(exc))
        return
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))


@app.command("plan")
def plan_cmd(
    target: Annotated[str | None, typer.Option(help="The target to pilot (as for bench run); needed unless "
                                                    "--pilot 0.")] = None,
    effect: Annotated[float, typer.Option(help="Effect to detect, in percentage points of error rate.")] = 7.0,
    tasks: Annotated[str, typer.Option(help="Comma-separated tasks.")] = ",".join(TASKS),
    pilot: Annotated[int, typer.Option(min=0, help="Pilot: score the neutral prompts of the first N items per task "
                                                   "(0: no pilot, assume --error).")] = 20,
    error: Annotated[float, typer.Option(min=0.0, max=1.0, help="Error rate assumed where no pilot measures it.")
                     ] = 0.3,
    discordance: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Share of prompts where the two "
                                                                             "compared targets differ (default: "
                                                                             "assumed independent errors).")] = None,
    items: Annotated[list[str] | None, typer.Option(help="Item file (TASK=FILE, or FILE with one task); repeat.")
                     ] = None,
    contexts: Annotated[Path | None, typer.Option(help="Contexts JSON (default: eval/contexts/default.json).")
                        ] = None,
    templates: Annotated[str | None, typer.Option(help="Templates of the planned run (default: all).")] = None,
    conditions: Annotated[str | None, typer.Option(help="Conditions of the planned run (default: all).")] = None,
    mode: Annotated[str, typer.Option(help="likelihood or generate (the pilot's and the run's mode).")
                    ] = "likelihood",
    seed: int = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Pilot prompts per forward pass.")] = 16,
    model: Annotated[str, typer.Option(help="Base model for base / warmth=W targets.")] = "smollm2-135m",
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = None,
    vectors: Annotated[Path | None, typer.Option(help="Dial vectors folder for warmth=W.")] = None,
    pilot_out: Annotated[Path | None, typer.Option(help="Keep the pilot run in this folder (default: discarded).")
                         ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the plan as JSON here.")] = None,
    threads: ThreadsOpt = None,
) -> None:
    """How many items and prompts a run needs to detect EFFECT pp with 80% power, per task, with the instrument
    verdict of a small pilot of the target (what is measured and what is assumed is printed)."""
    import json

    from steerwarm.bench.errors import DataFileError
    from steerwarm.bench.plan import plan_run
    from steerwarm.bench.runner import RunConfig
    from steerwarm.model.load import ModelNotFoundError
    from steerwarm.targets.endpoint import EndpointError
    from steerwarm.targets.registry import parse_target

    torch_threads(threads)
    task_list = parse_tasks(tasks)
    if pilot > 0 and target is None:
        fail("--target is needed for a pilot (or give --pilot 0 to plan from an assumed --error)")
    try:
        tgt = parse_target(target, model=model, dtype=dtype, device=device, vectors_dir=vectors) \
            if target is not None and pilot > 0 else None
        plans = plan_run(tgt, task_list, effect, pilot=pilot, items=parse_items(items, task_list),
                         contexts=contexts, templates=parse_csv(templates) or RunConfig.templates,
                         conditions=parse_csv(conditions), seed=seed, mode=mode, batch_size=batch_size, error=error,
                         discordance=discordance, pilot_out=pilot_out)
    except (DataFileError, ModelNotFoundError, EndpointError, FileNotFoundError, ValueError, KeyError) as exc:
        fail(str(exc))
        return
    for p in plans:
        for line in p.lines():
            console.print(line, soft_wrap=True)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps([p.record() for p in plans], indent=2, default=float) + "\n")
        console.print(f"wrote {json_out}")


@app.command("validate-judge")
def validate_cmd(
    shared: Annotated[Path | None, typer.Option(help="The shared data folder (default ../shared/data).")] = None,
    judge: Annotated[str | None, typer.Option(help="Also validate an LLM judge at http://HOST:PORT/v1#MODEL.")
                     ] = None,
    api_key_env: str = "OPENAI_API_KEY",
    concurrency: Annotated[int, typer.Option(min=1)] = 4,
    out: Annotated[Path, typer.Option(help="Where to write validate-judge.{json,md}.")] = Path("eval/validation"),
) -> None:
    """Agreement and Cohen's kappa of the matcher (and judge) with the authors' GPT-4o labels."""
    from steerwarm.bench.judge import Judge
    from steerwarm.bench.validate import to_markdown, validate, write_report
    from steerwarm.paths import shared_data
    from steerwarm.targets.endpoint import EndpointClient

    judge_obj = Judge(EndpointClient(judge, api_key_env=api_key_env, concurrency=concurrency)) if judge else None
    try:
        report = validate(shared or shared_data(), judge_obj)
    except FileNotFoundError as exc:
        fail(str(exc))
        return
    print(to_markdown(report))
    j, m = write_report(report, out)
    console.print(f"wrote {j} and {m}")


@app.command("prompts")
def prompts_cmd(
    task: Annotated[str, typer.Option(help="One task.")] = "trivia",
    items: Annotated[Path | None, typer.Option(help="Item file (default: ours).")] = None,
    contexts: Annotated[Path | None, typer.Option(help="Contexts JSON.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Items to show.")] = 1,
    seed: int = 0,
) -> None:
    """Print the prompt grid of the first items (every template x context), to inspect exactly what is asked."""
    from steerwarm.bench.contexts import load_contexts
    from steerwarm.bench.errors import DataFileError
    from steerwarm.bench.items import load_items
    from steerwarm.bench.prompts import build_grid

    try:
        s = load_items(parse_tasks(task)[0], items, seed=seed)
        s.items = s.items[:limit]
        grid = build_grid([s], load_contexts(contexts), seed=seed)
    except (DataFileError, ValueError) as exc:
        fail(str(exc))
        return
    for p in grid:
        print(f"[{p.prompt_id}] {p.text!r}")
