"""A benchmark run: build the prompt grid, score what is not yet in results.jsonl, batch by batch, then summarise.

Invariants:
- Resumable: the prompts already in RUN_DIR/results.jsonl (keyed by prompt id) are skipped; everything else is
  scored and appended one line per prompt as each batch finishes, so a killed run resumed with the same settings
  ends with exactly one record per prompt, identical in likelihood mode to an uninterrupted run's.
- The result-defining settings (target description, mode, seed, items and contexts files by hash, generation and
  scorer settings) are fixed by the first session in run.json; a different one is refused, naming the field.
  Paths in run.json are in `paths.display` form (no machine's absolute paths); a folder an older version made
  with absolute ones has them rewritten to that form on resume, so both sides of the check are written alike.
- Likelihood mode is judge-free and deterministic; its prompts are batched in text order (`batch_order`), so
  prompts that open alike (a context statement shared by several items, the neutral preamble, one item's templates
  under one context) share a batch and the scorer's prefix trees run their common tokens once; generate mode
  batches by length to waste little padding. For an in-process target the run also times a bare forward pass of
  the same prompts every `yardstick_every` batches (one left-padded batch, no sharing), interleaved with scoring,
  so items/s and the model's raw forward throughput come from the same conditions (`efficiency_same_batches` =
  raw forward time / scoring time on those batches; `efficiency_overall` = the run's prompts/s, everything
  included but the yardstick itself, / the raw forward prompts/s). Sharing prefixes lets both exceed 1.
- Generate mode seeds each batch from (seed, its first prompt id), so a batch's sampling does not depend on
  what ran before it.
- `per_item=K` keeps K prompts of each item (`per_item_subsample`), chosen from the seed and the prompt ids alone,
  so every target scored with the same settings gets the same prompts (paired comparisons hold); it is
  result-defining (a run folder made with another K, or without one, refuses to resume with it).
- Fault injection for tests: results.jsonl is a `records.RecordLog`, so STEERWARM_KILL_AFTER_RECORDS=N makes the
  process SIGKILL itself half way through writing its N-th record (a real kill and a real torn line), to prove resume.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steerwarm import __version__
from steerwarm.bench.contexts import ContextSet, load_contexts
from steerwarm.bench.items import ItemSet, load_task_items
from steerwarm.bench.judge import Judge
from steerwarm.bench.prompts import TEMPLATES, Prompt, build_grid
from steerwarm.bench.replies import replies
from steerwarm.bench.scoring import Verdict, likelihood_verdict, matcher_verdict
from steerwarm.bench.seeding import short_hash, stable_int
from steerwarm.bench.store import RunStore
from steerwarm.bench.summary import build_summary
from steerwarm.paths import display_paths
from steerwarm.records import Difference, SettingsMismatchError
from steerwarm.targets.registry import GenSettings, Target

MODES = ("likelihood", "generate")
RESULT_KEYS = ("target", "mode", "seed", "contexts", "items", "generation", "scorer", "likelihood_definition",
               "per_item")
LIKELIHOOD_DEFINITION = "v1: mean log-prob per token of the differing span + end-of-turn; wrong > correct = error"


@dataclass
class RunConfig:
    tasks: Sequence[str]
    out: Path
    mode: str = "likelihood"
    items: dict[str, Path] = field(default_factory=dict)
    contexts: Path | None = None
    limit: int | None = None
    seed: int = 0
    templates: Sequence[str] = TEMPLATES
    conditions: Sequence[str] | None = None
    batch_size: int = 16
    gen: GenSettings = field(default_factory=GenSettings)
    yardstick_every: int = 5
    per_item: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.batch_size < 1:
            raise ValueError("batch size must be at least 1")
        if self.per_item is not None and self.per_item < 1:
            raise ValueError(f"per-item must be at least 1, got {self.per_item}")


@dataclass
class RunResult:
    run_dir: Path
    total: int
    done_before: int
    scored_now: int
    seconds: float
    summary: dict[str, Any]
    throughput: dict[str, Any]


def _record(p: Prompt, target: Target, mode: str, verdict: Verdict, extra: dict[str, Any]) -> dict[str, Any]:
    return {"prompt_id": p.prompt_id, "task": p.task, "item_id": p.item.item_id, "template": p.template,
            "condition": p.condition, "group": p.group, "has_belief": p.has_belief,
            "statement_idx": p.statement_idx, "prompt": p.text, "prompt_sha": short_hash(p.text), "mode": mode,
            "target": target.spec, **extra, **verdict.record(), "time": time.time()}


def batch_order(prompts: Sequence[Prompt], mode: str) -> list[Prompt]:
    """The order in which a run scores its prompts (consecutive slices are its batches): likelihood mode sorts by
    text, so prompts with a common opening are neighbours (see the module doc); generate mode by length."""
    if mode == "likelihood":
        return sorted(prompts, key=lambda p: (p.text, p.prompt_id))
    return sorted(prompts, key=lambda p: (len(p.text) + len(p.item.correct) + len(p.item.wrong), p.prompt_id))


def per_item_subsample(grid: Sequence[Prompt], k: int, seed: int = 0) -> list[Prompt]:
    """K prompts of each item, in grid order, stratified over conditions by a seeded round-robin.

    For each item, the prompts of each condition are ranked by `stable_int(seed, "per-item", prompt_id)`; round r
    takes the r-th ranked prompt of every condition that still has one (those again in hash order), and the first K
    prompts of the concatenated rounds are kept. The choice depends only on the seed and the prompt ids, so every
    target gets the same prompts; a larger K keeps every prompt of a smaller one (the subsets are nested). An item
    with at most K prompts keeps all of them."""
    if k < 1:
        raise ValueError(f"per-item must be at least 1, got {k}")
    by_item: dict[tuple[str, str], list[Prompt]] = {}
    for p in grid:
        by_item.setdefault((p.task, p.item.item_id), []).append(p)
    keep: set[str] = set()
    for prompts in by_item.values():
        def rank(p: Prompt) -> tuple[int, str]:
            return stable_int(seed, "per-item", p.prompt_id), p.prompt_id

        by_cond: dict[str, list[Prompt]] = {}
        for p in prompts:
            by_cond.setdefault(p.condition, []).append(p)
        ranked = [sorted(ps, key=rank) for ps in by_cond.values()]
        order: list[Prompt] = []
        for r in range(max(len(ps) for ps in ranked)):
            order += sorted((ps[r] for ps in ranked if r < len(ps)), key=rank)
        keep.update(p.prompt_id for p in order[:k])
    return [p for p in grid if p.prompt_id in keep]


def build_run_grid(cfg: RunConfig) -> tuple[list[ItemSet], ContextSet, list[Prompt]]:
    """The item sets, contexts and prompts a run with `cfg` scores (after the `per_item` subsample)."""
    itemsets = load_task_items(cfg.tasks, cfg.items, seed=cfg.seed, limit=cfg.limit)
    contexts = load_contexts(cfg.contexts)
    grid = build_grid(itemsets, contexts, seed=cfg.seed, templates=cfg.templates, conditions=cfg.conditions)
    if cfg.per_item is not None:
        grid = per_item_subsample(grid, cfg.per_item, cfg.seed)
    return itemsets, contexts, grid


def run_benchmark(cfg: RunConfig, target: Target, *, judge: Judge | None = None, progress: bool = True,
                  on_progress: Callable[[int], None] | None = None) -> RunResult:
    """Score what `cfg.out` does not hold yet (see the module doc); `on_progress(n)` is called after each batch
    with the number of prompts it appended (a caller's own progress display, e.g. a sweep's overall bar)."""
    from tqdm import tqdm

    itemsets, contexts, grid = build_run_grid(cfg)
    store = RunStore(cfg.out)
    config: dict[str, Any] = {
        "target": target.describe(), "mode": cfg.mode, "seed": cfg.seed, "contexts": contexts.describe(),
        "items": {s.task: s.describe() for s in itemsets}, "tasks": list(cfg.tasks), "limit": cfg.limit,
        "templates": list(cfg.templates), "conditions": list(cfg.conditions) if cfg.conditions else None,
        "generation": cfg.gen.record() if cfg.mode == "generate" else None,
        "scorer": ("likelihood" if cfg.mode == "likelihood" else f"judge {judge.name}" if judge else "matcher"),
        "likelihood_definition": LIKELIHOOD_DEFINITION if cfg.mode == "likelihood" else None,
        "per_item": cfg.per_item,
        "steerwarm": __version__,
    }
    # items: compare per task only for tasks present in both sessions (adding tasks later is allowed)
    run = store.read_run()
    if run is not None and display_paths(run["config"]) != run["config"]:
        run["config"] = display_paths(run["config"])  # made by an older version: absolute paths
        store.write_run(run)
    if run is not None and "per_item" not in run["config"] and cfg.per_item is not None:
        raise SettingsMismatchError(store.run_json, [Difference("per_item", None, cfg.per_item)])
    if run is not None:
        old_items = run["config"].get("items", {})
        new_items: dict[str, Any] = {s.task: s.describe() for s in itemsets}
        config["items"] = {**old_items, **new_items}
        for task, desc in new_items.items():
            if task in old_items and old_items[task].get("sha256") != desc.get("sha256"):
                raise ValueError(f"{store.run_json}: items for {task} changed ({old_items[task].get('path')} -> "
                                 f"{desc.get('path')}); use a new --out folder")
    run = store.open_run(config, [k for k in RESULT_KEYS if k != "items"])
    done = store.load(repair=True)
    pending = batch_order([p for p in grid if p.prompt_id not in done], cfg.mode)
    batches = [pending[i:i + cfg.batch_size] for i in range(0, len(pending), cfg.batch_size)]
    appended = 0
    score_s = raw_s = 0.0
    sampled_prompts = 0
    start = time.perf_counter()
    bar = tqdm(total=len(grid), initial=len(grid) - len(pending), disable=not progress, unit="prompt",
               desc=f"{target.spec} {cfg.mode}", dynamic_ncols=True)
    try:
        for bi, batch in enumerate(batches):
            users = [p.text for p in batch]
            t0 = time.perf_counter()
            if cfg.mode == "likelihood":
                scores = target.score(users, [replies(p.item) for p in batch])
                records = [_record(p, target, cfg.mode, likelihood_verdict(s.is_incorrect), s.record())
                           for p, s in zip(batch, scores, strict=True)]
            else:
                outs = target.generate(users, cfg.gen, seed=stable_int(cfg.seed, batch[0].prompt_id) % (2**31))
                if judge is not None:
                    verdicts = judge.verdicts([(p.item, o) for p, o in zip(batch, outs, strict=True)])
                else:
                    verdicts = [matcher_verdict(p.item, o) for p, o in zip(batch, outs, strict=True)]
                records = [_record(p, target, cfg.mode, v, {"output": o})
                           for p, o, v in zip(batch, outs, verdicts, strict=True)]
            elapsed = time.perf_counter() - t0
            if cfg.mode == "likelihood" and cfg.yardstick_every and bi % cfg.yardstick_every == 0:
                raw = target.raw_forward_seconds(users)
                if raw is not None:
                    raw_s += raw
                    score_s += elapsed
                    sampled_prompts += len(batch)
            appended += store.append(records)
            bar.update(len(batch))
            if on_progress is not None:
                on_progress(len(batch))
    finally:
        bar.close()
        # the yardstick passes are measurement overhead: they are not part of the run's own time
        seconds = time.perf_counter() - start - raw_s
        rate = appended / seconds if seconds > 0 and appended else None
        throughput: dict[str, Any] = {"prompts": appended, "seconds": seconds, "prompts_per_s": rate,
                                      "batch_size": cfg.batch_size}
        if sampled_prompts:
            raw_rate = sampled_prompts / raw_s
            throughput.update(yardstick_prompts=sampled_prompts, raw_forward_prompts_per_s=raw_rate,
                              scoring_prompts_per_s=sampled_prompts / score_s,
                              efficiency_same_batches=raw_s / score_s,
                              efficiency_overall=(rate / raw_rate) if rate else None)
        if appended:
            run.setdefault("sessions", []).append({"started": time.strftime("%Y-%m-%dT%H:%M:%S"), **throughput})
            store.write_run(run)
    summary = build_summary(store)
    store.write_summary(summary)
    return RunResult(store.dir, len(grid), len(grid) - len(pending), appended, seconds, summary, throughput)
