"""`steerwarm sweep run|report`: the benchmark at every dial value plus reference targets (`steerwarm sweep run
--warmth ... --out DIR`), and its report (`steerwarm sweep report DIR`).

Invariant: thin: options are parsed here and handed to `sweep.run.run_sweep` / `sweep.report`; input
problems (a bad --warmth, a value outside the dial range, missing vectors, an unknown task, a changed setting on a
rerun, --endpoint with --vector/--vectors/--layers, a "warmth" in --extra-body) exit with status 2 and a one-line
message naming what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from steerwarm.bench import TASKS
from steerwarm.cli.bench import ApiKeyEnvOpt, ConcurrencyOpt, ExtraBodyOpt, RetriesOpt
from steerwarm.cli.options import (
    ChatTemplateOpt,
    DeviceOpt,
    ThreadsOpt,
    console,
    fail,
    json_object,
    parse_csv,
    parse_items,
    parse_tasks,
    torch_threads,
)
from steerwarm.paths import paper_summary_data

app = typer.Typer(help="Sweep the warmth dial over the benchmark, with fine-tunes as references; report it.",
                  no_args_is_help=True, pretty_exceptions_enable=False)


def _int_list(spec: str | None, option: str) -> list[int] | None:
    if not spec:
        return None
    out: list[int] = []
    try:
        for part in (p.strip() for p in spec.split(",") if p.strip()):
            if "-" in part:
                a, b = part.split("-")
                out.extend(range(int(a), int(b) + 1))
            else:
                out.append(int(part))
    except ValueError:
        fail(f"{option} {spec!r}: give layer numbers, e.g. 12,15 or 10-14")
    return out


@app.command("run")
def run_cmd(
    warmth: Annotated[str, typer.Option(help="Dial values: START:STOP:STEP (e.g. -1.5:1.5:0.25) or a list "
                                             "(0,0.5,1); 0 is always added.")],
    out: Annotated[Path, typer.Option(help="Sweep folder (sweep.json, runs/, meter.jsonl); rerun to resume.")],
    vector: Annotated[Path | None, typer.Option(help="One vector file instead of the dial folder: calibrated -> "
                                                     "signed dial units; uncalibrated -> values are RAW "
                                                     "coefficients.")] = None,
    vectors: Annotated[Path | None, typer.Option(help="Dial folder with warm/cold.safetensors (default vectors/).")
                       ] = None,
    layers: Annotated[str | None, typer.Option(help="Steer these layers instead of the vectors' own, e.g. 12,15.")
                      ] = None,
    tasks: Annotated[str, typer.Option(help="Comma-separated tasks.")] = ",".join(TASKS),
    items: Annotated[list[str] | None, typer.Option(help="Item file (TASK=FILE, or FILE with one task); repeat.")
                     ] = None,
    contexts: Annotated[Path | None, typer.Option(help="Contexts JSON (default: eval/contexts/default.json).")
                        ] = None,
    mode: Annotated[str, typer.Option(help="likelihood (judge-free) or generate (the reference matcher).")
                    ] = "likelihood",
    reference: Annotated[list[str] | None, typer.Option(help="Reference target: finetune=NAME, prompt=warm|cold|FILE, "
                                                             "base, a model folder, an endpoint; repeat.")] = None,
    per_item: Annotated[int | None, typer.Option(min=1, help="Seeded subsample: K prompts per item, the same at "
                                                             "every point.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="First N items per task.")] = None,
    templates: Annotated[str | None, typer.Option(help="Subset of original,original_neutral,incorrect,correct.")
                         ] = None,
    conditions: Annotated[str | None, typer.Option(help="Subset of contexts, e.g. unmodified,emotion:sad.")] = None,
    seed: int = 0,
    model: Annotated[str, typer.Option(help="Base model (the dial points and `base`).")] = "smollm2-135m",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16 (every point and reference; auto is "
                                            "resolved for the device and recorded).")] = "float32",
    device: DeviceOpt = None,
    chat_template: ChatTemplateOpt = None,
    meter_prompts: Annotated[int, typer.Option(min=0, help="Warmth meter: greedy answers to the first N validation "
                                                           "prompts per point (0: off).")] = 24,
    meter_tokens: Annotated[int, typer.Option(min=1, help="Warmth meter: new tokens per answer.")] = 64,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per forward pass.")] = 16,
    fork: Annotated[bool, typer.Option(help="Likelihood mode: score each batch once for all local dial points, the "
                                            "layers below a point's first steered layer shared (same results as "
                                            "--no-fork, which runs the points one after another).")] = True,
    max_tokens: Annotated[int, typer.Option(min=1, help="Generate mode: new tokens.")] = 300,
    temperature: Annotated[float, typer.Option(min=0.0, help="Generate mode: sampling temperature.")] = 0.8,
    endpoint: Annotated[str | None, typer.Option(help="Serve every dial point from this endpoint "
                                                      "(http://HOST:PORT/v1#MODEL: steerwarm serve, or vLLM with "
                                                      "the plugin) with the point's warmth in the request body; "
                                                      "--model is then the local tokenizer and meter model.")
                        ] = None,
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY",
    extra_body: ExtraBodyOpt = None,
    concurrency: ConcurrencyOpt = 4,
    retries: RetriesOpt = 5,
    threads: ThreadsOpt = None,
    progress: Annotated[bool, typer.Option(help="Show the overall progress bar.")] = True,
) -> None:
    """Run the benchmark at every dial value (one model load) and for each reference; resumable."""
    torch_threads(threads)
    from steerwarm.bench.errors import DataFileError
    from steerwarm.model.device import placement
    from steerwarm.model.load import ModelNotFoundError
    from steerwarm.records import SettingsMismatchError
    from steerwarm.sweep.run import SweepConfig, parse_warmths, point_line, run_sweep
    from steerwarm.targets.endpoint import EndpointError
    from steerwarm.targets.registry import GenSettings

    task_list = parse_tasks(tasks)
    try:
        cfg = SweepConfig(warmths=parse_warmths(warmth), out=out, tasks=task_list, mode=mode,
                          items=parse_items(items, task_list), contexts=contexts, limit=limit, per_item=per_item,
                          seed=seed, templates=parse_csv(templates) or SweepConfig.templates,
                          conditions=parse_csv(conditions), model=model, dtype=placement(device, dtype).dtype,
                          device=device, chat_template=chat_template, vector=vector, vectors=vectors,
                          layers=_int_list(layers, "--layers"), references=reference or [], batch_size=batch_size,
                          fork=fork,
                          gen=GenSettings(max_tokens=max_tokens, temperature=temperature),
                          meter_prompts=meter_prompts, meter_tokens=meter_tokens, endpoint=endpoint,
                          api_key_env=api_key_env, extra_body=json_object(extra_body, "--extra-body"),
                          concurrency=concurrency, retries=retries)
        res = run_sweep(cfg, progress=progress)
    except (DataFileError, SettingsMismatchError, ModelNotFoundError, EndpointError, FileNotFoundError, ValueError,
            KeyError) as exc:
        fail(str(exc))
        return
    console.print(f"{res.out}: {len(res.points)} points x {res.prompts_per_point} prompts, {res.scored_now} scored "
                  f"now in {res.seconds:.1f}s" + (f" (units: {res.config['units']})" if res.config["units"] != "dial"
                                                 else ""), soft_wrap=True)
    for r in res.points:
        console.print("  " + point_line(r) + (" (complete, skipped)" if r.skipped else ""), soft_wrap=True)


@app.command("report")
def report_cmd(
    sweep_dir: Annotated[Path, typer.Argument(help="A sweep folder (with sweep.json).")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default SWEEP_DIR/report).")] = None,
    paper_dir: Annotated[Path | None, typer.Option(help="The paper's summary_data folder (default "
                                                        "../shared/data/warm_ai_2025/summary_data when present).")
                         ] = None,
    matcher_validation: Annotated[Path | None, typer.Option(
        help="Generate mode: a validate-judge.json (steerwarm bench validate-judge) whose matcher kappa per task the "
             "report states (e.g. eval/validation/validate-judge.json).")] = None,
) -> None:
    """Markdown report of a sweep: tables, plots, regression effects per dial unit next to the fine-tunes and the
    paper's published numbers."""
    from steerwarm.bench.errors import DataFileError
    from steerwarm.sweep.report import write_sweep_report

    if not (sweep_dir / "sweep.json").is_file():
        fail(f"{sweep_dir} has no sweep.json; is it a sweep folder (steerwarm sweep run --out)?")
    default = paper_summary_data()
    paper = paper_dir if paper_dir is not None else (default if default.is_dir() else None)
    try:
        paths = write_sweep_report(sweep_dir, out, paper, matcher_validation)
    except (DataFileError, FileNotFoundError, ValueError, KeyError) as exc:
        fail(str(exc))
        return
    console.print("wrote " + ", ".join(str(p) for p in paths.values()), soft_wrap=True)
