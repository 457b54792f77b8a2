"""Likelihood-mode scoring speed on the real default model: the scorer (prefix trees, one pass per batch) against
the old-style reference (each prompt's two replies as two full sequences, left-padded batches, computed here) and,
when git has it, the previous committed scorer (prompt cached once for both replies), on the same batches of the
default run, interleaved over rounds.

The sampled batches are evenly spaced slices of the default run's own batch order (all four tasks, default items,
contexts and templates, `runner.batch_order`), so each batch shares exactly what it shares in the full run.
Prints prompts/s per method, the median of per-round ratios, the largest score difference to the reference
(log-probability sums, and verdicts), and the projected time of the full default run (prompts x seconds/prompt).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/bench_likelihood.py --prompts 150 --rounds 3
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREVIOUS_REV = "23f7970"  # the last commit whose scorer ran each prompt once, then both replies from its cache


def previous_scorer(rev: str) -> types.ModuleType | None:
    """The likelihood module as committed at `rev` (None when git or the revision is not available)."""
    try:
        src = subprocess.run(["git", "show", f"{rev}:src/steerwarm/bench/likelihood.py"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    spec = importlib.util.spec_from_loader("likelihood_previous", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["likelihood_previous"] = module
    exec(compile(src, f"likelihood@{rev}", "exec"), module.__dict__)
    return module


def full_sequences(loaded, users: Sequence[str], items: Sequence) -> list:  # type: ignore[no-untyped-def]
    """Old-style reference: every reply as one full sequence (chat prompt + reply), a prompt's two replies and all
    prompts of the batch in one left-padded forward pass; output projection only where a scored token is predicted
    (so the reference is not slowed by logits nobody reads)."""
    import torch

    from steerwarm.targets.likelihood import PairScore, ReplyScore, pair_texts

    tok, model = loaded.tokenizer, loaded.model
    seqs, scored = [], []
    for user, item in zip(users, items, strict=True):
        prompt, conts, start = pair_texts(loaded, user, item)
        for cont in conts:
            enc = tok(prompt + cont, add_special_tokens=False, return_offsets_mapping=True)
            seqs.append(list(enc["input_ids"]))
            scored.append([k for k, o in enumerate(enc["offset_mapping"]) if o[0] >= len(prompt) + start])
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), int(tok.pad_token_id or 0), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, width - len(s):] = torch.tensor(s)
        mask[b, width - len(s):] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    rows = [b for b, sc in enumerate(scored) for _ in sc]
    cols = [width - len(seqs[b]) + t - 1 for b, sc in enumerate(scored) for t in sc]
    targets = torch.tensor([seqs[b][t] for b, sc in enumerate(scored) for t in sc])
    with torch.inference_mode():
        hidden = model.get_decoder()(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=pos[:, :-1],
                                     use_cache=False).last_hidden_state
        logits = model.get_output_embeddings()(hidden[rows, cols]).float()
        lps = (torch.gather(logits, -1, targets[:, None])[:, 0] - torch.logsumexp(logits, -1)).tolist()
    out, at = [], 0
    for sc in scored:
        out.append(ReplyScore(float(sum(lps[at: at + len(sc)])), len(sc)))
        at += len(sc)
    return [PairScore(out[2 * i], out[2 * i + 1]) for i in range(len(users))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=150, help="prompts per round (whole batches, evenly spaced)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--previous", default=PREVIOUS_REV, help="git revision of the previous scorer ('' to skip)")
    ap.add_argument("--no-full", action="store_true", help="skip the old-style full-sequence reference")
    ap.add_argument("--also-dtype", default="", help="also time the scorer on the model loaded in this dtype "
                    "(e.g. bfloat16), with its verdict agreement against --dtype")
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from steerwarm.bench.contexts import load_contexts
    from steerwarm.bench.items import load_task_items
    from steerwarm.bench.prompts import build_grid
    from steerwarm.bench.runner import batch_order
    from steerwarm.model.load import load
    from steerwarm.targets.likelihood import score_items

    torch.set_num_threads(args.threads)
    loaded = load("smollm2-135m", args.dtype)
    tasks = ["trivia", "truthfulqa", "disinfo", "medqa"]
    grid = build_grid(load_task_items(tasks, {}, seed=0), load_contexts(None), seed=0)
    ordered = batch_order(grid, "likelihood")
    bs = args.batch_size
    batches = [ordered[i:i + bs] for i in range(0, len(ordered), bs)]
    n = max(1, min(len(batches), round(args.prompts / bs)))
    picked = [batches[int((i + 0.5) * len(batches) / n)] for i in range(n)]  # evenly spaced, ends excluded
    n_prompts = sum(len(b) for b in picked)
    print(f"default run: {len(grid)} prompts in {len(batches)} batches of {bs}; sampled {len(picked)} evenly spaced "
          f"batches = {n_prompts} prompts; {args.rounds} rounds; torch threads {args.threads}; {args.dtype}")

    memo_new: dict = {}
    methods: dict[str, Callable[[Sequence[str], Sequence], list]] = {
        "new": lambda u, i: score_items(loaded, u, i, None, memo_new)}
    if not args.no_full:
        methods["full"] = lambda u, i: full_sequences(loaded, u, i)
    if args.also_dtype:
        other = load("smollm2-135m", args.also_dtype)
        memo_other: dict = {}
        methods[f"new-{args.also_dtype}"] = lambda u, i: score_items(other, u, i, None, memo_other)
    prev = previous_scorer(args.previous) if args.previous else None
    if prev is not None:
        memo_prev: dict = {}
        methods["previous"] = lambda u, i: prev.score_items(loaded, u, i, None, memo_prev)
    elif args.previous:
        print(f"(previous scorer at {args.previous} not available from git: skipped)")

    for fn in methods.values():  # warm-up (and the prefix memos), not timed
        fn([p.text for p in picked[0][:2]], [p.item for p in picked[0][:2]])
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    results: dict[str, list] = {}
    names = list(methods)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate which method goes first
            out = []
            start = time.perf_counter()
            for batch in picked:
                out += methods[name]([p.text for p in batch], [p.item for p in batch])
            seconds[name].append(time.perf_counter() - start)
            results[name] = out
        print(f"round {r + 1}: " + ", ".join(f"{m} {n_prompts / seconds[m][-1]:.2f} prompts/s" for m in names),
              flush=True)

    ref = "full" if "full" in results else "previous" if "previous" in results else None
    if ref is not None:
        for name in names:
            if name == ref:
                continue
            diff = max(max(abs(a.correct.logprob_sum - b.correct.logprob_sum),
                           abs(a.wrong.logprob_sum - b.wrong.logprob_sum))
                       for a, b in zip(results[name], results[ref], strict=True))
            same = sum(a.is_incorrect == b.is_incorrect for a, b in zip(results[name], results[ref], strict=True))
            tokens = all((a.correct.n_tokens, a.wrong.n_tokens) == (b.correct.n_tokens, b.wrong.n_tokens)
                         for a, b in zip(results[name], results[ref], strict=True))
            print(f"{name} vs {ref}: max |log-prob sum difference| {diff:.2e}; same verdicts {same}/{n_prompts}; "
                  f"same token counts {tokens}")
    if args.also_dtype:
        a_res, b_res = results["new"], results[f"new-{args.also_dtype}"]
        same = sum(a.is_incorrect == b.is_incorrect for a, b in zip(a_res, b_res, strict=True))
        diff = max(abs(a.correct.logprob_sum - b.correct.logprob_sum) for a, b in zip(a_res, b_res, strict=True))
        print(f"new-{args.also_dtype} vs new ({args.dtype}): same verdicts {same}/{n_prompts}; max |log-prob sum "
              f"difference| {diff:.3f}; error rates {sum(a.is_incorrect for a in a_res)} vs "
              f"{sum(b.is_incorrect for b in b_res)} of {n_prompts}")
    print(f"\n{'method':<10} {'prompts/s (median)':>19} {'projected full run':>19}")
    for name in names:
        per_prompt = statistics.median(seconds[name]) / n_prompts
        print(f"{name:<10} {1 / per_prompt:>19.2f} {len(grid) * per_prompt:>17.0f} s")
    for other in names[1:]:
        ratios = [o / s for s, o in zip(seconds["new"], seconds[other], strict=True)]
        print(f"speed-up new vs {other}: median of per-round ratios {statistics.median(ratios):.2f}x "
              f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})")


if __name__ == "__main__":
    main()
