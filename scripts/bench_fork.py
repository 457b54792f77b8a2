"""Forked dial points against separate points, on the real default model (smollm2-135m, the shipped dial: warm at
layer 15, cold at 18 of 30), likelihood mode, interleaved in one process (ABAB... over rounds).

- separate: what `sweep run --no-fork` does per batch: one `LocalTarget` per dial value, `target.score(batch)`.
- forked: what a forked sweep does per batch: `score_pairs_forked` with every dial value as a stream (layers
  0..15 once, layers 16..29, the final norm and the scored positions' output projection per dial value, stacked).

The batches are evenly spaced slices of the FULL default grid's own batch order (4 tasks x 64 items x 28 prompts,
`runner.batch_order`, --batch-size), so each sampled batch shares exactly what it shares in the full run and the
projection to the full grid is not flattered by a slice that shares more (or less). Prints per-round times, the
median of the per-round ratios separate/forked, the largest score difference between the two (log-probability
sums) and verdict agreement, and the projected time of the full grid (13 dial values x every prompt) at each speed.
On a shared machine absolute times move with the load; the interleaved ratio is the meaningful number.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/bench_fork.py --batches 7 --rounds 2
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/bench_fork.py --dtypes float32,bfloat16 --threads 2  # dtypes

Measured 2026-12-03 (1 thread, the 2-core machine shared with two fine-tunings and other tests, load average 3-7;
--batches 2, 13 dial values, two runs of 2 and 3 rounds): separate/forked per-round ratios 2.63, 1.78 and 2.20,
2.08, 1.84 (median 2.08x; the layer count predicts 390/180 = 2.17x); forked scores bit-identical to separate ones
(416/416 log-probability sums, same verdicts). Absolute times were 2-5x slower than on a quiet machine.

Measured 2026-12-04 (quiet machine, 2 threads, --batches 7, --dtypes float32,bfloat16; two runs of 3 and 1 rounds):
forked float32 104.3, 93.6, 93.3 and 121.4 s, forked bfloat16 43.7, 35.9, 43.0 and 48.7 s for the same 1456
prompt-points: per-round float32/bfloat16 2.39, 2.61, 2.17 and 2.49 (median 2.44x). Projected full grid per round:
float32 100-130 min, bfloat16 38-52 min. bfloat16 against float32 (second run): the same verdict on 1449 of 1456
prompt-points (99.5%), error rate bfloat16 45.8%, float32 46.0%, largest difference of a reply's mean
log-probability 0.27 (logits are taken to float32 before the softmax).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=7, help="evenly spaced batches of the full default run")
    ap.add_argument("--rounds", type=int, default=2, help="ABAB rounds (each: separate, then forked; alternating)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--warmth", default="-1.5:1.5:0.25", help="dial values (13 by default)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only-forked", action="store_true", help="time the forked path only (e.g. other batch sizes)")
    ap.add_argument("--dtypes", default="float32", help="comma-separated model dtypes; with two or more, the forked "
                    "path is timed in each (interleaved) and verdicts are compared with the first")
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from pathlib import Path

    import torch

    from steerwarm.bench import TASKS
    from steerwarm.bench.replies import replies
    from steerwarm.bench.runner import RunConfig, batch_order, build_run_grid
    from steerwarm.model.load import load
    from steerwarm.paths import shipped_vectors
    from steerwarm.steer.dial import Dial
    from steerwarm.sweep.run import parse_warmths
    from steerwarm.targets.likelihood import PairScore, score_pairs_forked
    from steerwarm.targets.registry import LocalTarget

    torch.set_num_threads(args.threads)
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    models = {d: load("smollm2-135m", d) for d in dtypes}
    loaded = models[dtypes[0]]
    dial = Dial.from_dir(shipped_vectors())
    warmths = parse_warmths(args.warmth)
    _, _, grid = build_run_grid(RunConfig(tasks=list(TASKS), out=Path(".")))  # nothing is written
    ordered = batch_order(grid, "likelihood")
    bs = args.batch_size
    batches = [ordered[i:i + bs] for i in range(0, len(ordered), bs)]
    n = max(1, min(len(batches), args.batches))
    picked = [batches[int((i + 0.5) * len(batches) / n)] for i in range(n)]
    n_prompts = sum(len(b) for b in picked)
    print(f"full default grid: {len(grid)} prompts ({len(batches)} batches of {bs}); sampled {n} evenly spaced "
          f"batches = {n_prompts} prompts; {len(warmths)} dial values {warmths[0]:+g}..{warmths[-1]:+g}; "
          f"{args.rounds} rounds; torch threads {args.threads}; warm layers {dial.warm.layers}, cold layers "
          f"{dial.cold.layers if dial.cold else None}", flush=True)

    targets = [LocalTarget(f"warmth={w}", loaded, "steered", dial=dial, warmth=w) for w in warmths]

    def separate() -> list[list[PairScore]]:
        out: list[list[PairScore]] = [[] for _ in warmths]
        for t, res in zip(targets, out, strict=True):
            for b in picked:
                res += t.score([p.text for p in b], [replies(p.item) for p in b])
        return out

    memos: dict[str, dict[tuple[int, ...], Any]] = {d: {} for d in dtypes}  # each model's shared-prefix caches

    def forked_in(dtype: str, batches: list[Any]) -> list[list[PairScore]]:
        out: list[list[PairScore]] = [[] for _ in warmths]
        for b in batches:
            got = score_pairs_forked(models[dtype], [p.text for p in b], [replies(p.item) for p in b], len(warmths),
                                     lambda streams: dial.specs([warmths[s] for s in streams]), memos[dtype])
            for res, g in zip(out, got, strict=True):
                res += g
        return out

    # the forked path in each dtype ("forked" is the first dtype's); the separate path only with one dtype
    forks = {"forked" if i == 0 else f"forked-{d}": (lambda d=d: forked_in(d, picked)) for i, d in enumerate(dtypes)}
    methods = forks if args.only_forked or len(dtypes) > 1 else {"separate": separate, **forks}
    small = picked[0][:2]
    if "separate" in methods:
        for t in targets:  # warm-up and the prefix memos, not timed
            t.score([p.text for p in small], [replies(p.item) for p in small])
    for d in dtypes:
        forked_in(d, [small])
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    results: dict[str, list[list[PairScore]]] = {}
    names = list(methods)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:  # ABBA...: neither always goes first
            start = time.perf_counter()
            results[name] = methods[name]()
            seconds[name].append(time.perf_counter() - start)
        print(f"round {r + 1}: " + ", ".join(f"{m} {seconds[m][-1]:.1f} s" for m in names), flush=True)

    def paired(x: str, y: str) -> list[tuple[PairScore, PairScore]]:
        return [(a, b) for sa, sb in zip(results[x], results[y], strict=True) for a, b in zip(sa, sb, strict=True)]

    def ratio_line(x: str, y: str, label: str) -> str:
        ratios = [a / b for a, b in zip(seconds[x], seconds[y], strict=True)]
        return (f"{label}: median of per-round ratios {statistics.median(ratios):.2f}x "
                f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})")

    forks_after = [m for m in names if m.startswith("forked-")]
    if "separate" in results:
        pairs = paired("separate", "forked")
        diff = max(max(abs(a.correct.logprob_sum - b.correct.logprob_sum),
                       abs(a.wrong.logprob_sum - b.wrong.logprob_sum)) for a, b in pairs)
        exact = sum(a.correct.logprob_sum == b.correct.logprob_sum and a.wrong.logprob_sum == b.wrong.logprob_sum
                    for a, b in pairs)
        same = sum(a.is_incorrect == b.is_incorrect for a, b in pairs)
        print(f"forked vs separate: max |log-prob sum difference| {diff:.2e}; bit-identical {exact}/{len(pairs)}; "
              f"same verdicts {same}/{len(pairs)}")
    for name in forks_after:
        pairs = paired("forked", name)
        diff = max(max(abs(a.correct.mean - b.correct.mean), abs(a.wrong.mean - b.wrong.mean)) for a, b in pairs)
        same = sum(a.is_incorrect == b.is_incorrect for a, b in pairs)
        errs = [sum(b.is_incorrect for b in bs) / len(bs) for bs in ([a for a, _ in pairs], [b for _, b in pairs])]
        print(f"{name} vs {dtypes[0]}: max |mean log-prob difference| {diff:.3f}; same verdicts {same}/{len(pairs)} "
              f"({same / len(pairs):.1%}); error rate {errs[0]:.1%} vs {errs[1]:.1%}")
    point_prompts = n_prompts * len(warmths)
    print(f"\n{'path':<9} {'s/prompt/point (median)':>24} {'full grid, ' + str(len(warmths)) + ' points':>20}")
    for name in names:
        per = statistics.median(seconds[name]) / point_prompts
        print(f"{name:<9} {per:>24.4f} {len(grid) * len(warmths) * per / 60:>17.1f} min")
    for name in forks_after:
        print(ratio_line("forked", name, f"forked ({dtypes[0]})/{name}"))
    if "separate" in seconds:
        print(ratio_line("separate", "forked", "separate/forked"))


if __name__ == "__main__":
    main()
