"""Plan a benchmark run: how many items and prompts detect an effect of a given size, from a small pilot of the
target (`steerwarm bench plan`).

The pilot is an ordinary, bounded benchmark run (bench.runner) of the target on the neutral prompts only (templates
original and original_neutral, no context) of the first `pilot` items per task; it measures the target's error rate
and gives the instrument check (bench.instrument) of each task. The sizes come from `instrument.plan_items` (the
McNemar power formula of `stats.mcnemar_mde`, inverted) with the grid's prompts per item taken from the templates and
contexts the planned run will use.

Invariants: every number carries where it came from: the error rate is "measured (pilot, n prompts)" or "assumed";
the discordance of the two targets to be compared is "assumed" (independent errors; a pilot of one target cannot
measure it) unless given. Without a pilot nothing is run and no instrument verdict is given.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steerwarm.bench.contexts import UNMODIFIED, load_contexts
from steerwarm.bench.instrument import NEUTRAL_TEMPLATES, Plan, TaskInstrument, instrument_check, plan_items
from steerwarm.bench.items import load_task_items
from steerwarm.bench.prompts import TEMPLATES, grid_cells
from steerwarm.bench.runner import RunConfig, run_benchmark
from steerwarm.bench.store import RunStore
from steerwarm.bench.summary import records_frame
from steerwarm.targets.registry import Target

DEFAULT_ERROR = 0.3


@dataclass(frozen=True)
class TaskPlan:
    plan: Plan
    available_items: int
    instrument: TaskInstrument | None

    def record(self) -> dict[str, Any]:
        return {**self.plan.record(), "available_items": self.available_items,
                "instrument": None if self.instrument is None else self.instrument.record()}

    def lines(self) -> list[str]:
        p = self.plan
        out = [f"{p.task}: detect +{p.effect_pp:g} pp with 80% power (two-sided 5%); error {100 * p.error:.1f}% "
               f"({p.error_source}), discordance {100 * p.discordance:.1f}% ({p.discordance_source}); "
               f"{self.available_items} items available"]
        for d in p.designs:
            if "error" in d:
                out.append(f"  {d['design']}: {d['error']}")
                continue
            short = " (MORE than the items available)" if d["items"] > self.available_items else ""
            out.append(f"  {d['design']}: {d['pairs']} paired prompts = {d['items']} items x "
                       f"{d['prompts_per_item']} prompt(s) per item in this design{short}; a run of the full grid "
                       f"on {d['items']} items scores {d['prompts']} prompts per target")
        out.append("  (McNemar pairs assumed independent: prompts of one item are correlated, so the pooled "
                   "designs need more items than shown)")
        if self.instrument is not None:
            out.append(f"  pilot instrument check: {self.instrument.line()}")
        return out


def plan_run(target: Target | None, tasks: Sequence[str], effect_pp: float, *, pilot: int = 20,
             items: dict[str, Path] | None = None, contexts: Path | None = None,
             templates: Sequence[str] = TEMPLATES, conditions: Sequence[str] | None = None, seed: int = 0,
             mode: str = "likelihood", batch_size: int = 16, error: float = DEFAULT_ERROR,
             discordance: float | None = None, pilot_out: Path | None = None) -> list[TaskPlan]:
    """Per task, the items and prompts needed (see the module doc); `pilot` 0 runs nothing and assumes `error`."""
    if effect_pp <= 0 or effect_pp >= 100:
        raise ValueError(f"--effect must be a positive number of percentage points below 100, got {effect_pp}")
    if pilot > 0 and target is None:
        raise ValueError("a pilot needs a target")
    cells = grid_cells(load_contexts(contexts), templates, conditions)
    itemsets = load_task_items(tasks, items, seed=seed)
    available = {s.task: len(s.items) for s in itemsets}
    checks: dict[str, TaskInstrument] = {}
    measured: dict[str, tuple[float, int]] = {}
    if pilot > 0 and target is not None:
        with tempfile.TemporaryDirectory(prefix="steerwarm-pilot-") as tmp:
            cfg = RunConfig(tasks=tasks, out=pilot_out or Path(tmp), mode=mode, items=dict(items or {}),
                            contexts=contexts, limit=pilot, seed=seed, templates=NEUTRAL_TEMPLATES,
                            conditions=[UNMODIFIED], batch_size=batch_size)
            res = run_benchmark(cfg, target, progress=False)
            frame = records_frame(RunStore(res.run_dir).load().values())
        summary = res.summary
        # the baselines from the items loaded here (the pilot's run.json may name a file this process cannot find)
        checks = {c.task: c for c in instrument_check(frame, mode, {s.task: s.items for s in itemsets})}
        for task, t in summary["tasks"].items():
            c = t["no_context_no_belief"]
            if c["n_scored"]:
                measured[task] = (c["error_rate"], c["n_scored"])
    out = []
    for task in tasks:
        if task in measured:
            err, n = measured[task]
            source = f"measured: pilot, {n} neutral prompts of the first {min(pilot, available[task])} items"
        else:
            err, source = error, "assumed" + (" (the pilot scored no prompt)" if pilot > 0 else "")
        plan = plan_items(task, effect_pp, err, source, cells, discordance)
        out.append(TaskPlan(plan, available.get(task, 0), checks.get(task)))
    return out
