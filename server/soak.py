"""Soak and storm a steerwarm server: many clients for a long time, streams cut mid-way, bursts beyond the queue.

By default it starts `steerwarm serve` itself on a free 127.0.0.1 port (`--model`, default the default model, with
`--max-batch 16 --max-queue 16` so a burst beyond the queue is cheap); `--url` attacks a server already running on
this machine instead. For `--minutes` (default 20) `--clients` (default 16) concurrent clients of the official
`openai` client send requests back to back, each one drawn at random: chat or completions, streamed or not, warmth 0
(a quarter of them) or uniform in [-1, 1] (only 0 when the server has no dial), a prompt from load_test.PROMPTS,
greedy, `--max-tokens` tokens. `--cancel-share` (30%) of the streams are closed by the client after k chunks (k
uniform in 1..max_tokens/2). Once a minute, at second 30, a burst of `--burst` non-streamed requests is sent at once:
more than the server's rows and queue hold (default max_batch + max_queue + clients), so some get 429. Every
`--sample-seconds` (5) it samples the server's RSS (psutil, else /proc/PID/status; with `--url`, the process that
listens on the port, or `--pid`) and /health's running_rows and queue_depth.

At the deadline the clients stop and every request still in flight is dropped (its connection closed), then the
server must be idle (running_rows and queue_depth 0) within `--idle-timeout` s, and a plain request must still be
answered; a server this script started is then stopped with SIGTERM and must exit 0.

Invariants:
- Only this machine: the URL is http://127.0.0.1 (or localhost), a started server binds 127.0.0.1.
- Bounded: the load stops at `--minutes` and at `--max-requests` requests (bursts included); every request has
  `--timeout` s; the openai client never retries (max_retries=0), so each 429 is counted once.
- The log (`--log`, JSONL) gets one line per event as it happens (a "start" line with the settings, a "request"
  line per request, a "sample" line per sample, a "summary" line at the end), flushed line by line, so it can be read
  while the run goes on, and `--report LOG` prints the tables from any log, a cut-short one included.
- Latency is send to last byte of the successful non-streamed requests and of the streams that ran to their end,
  together (burst requests and cancelled streams excluded); the per-minute table also shows the two kinds apart.
  Requests are put in the minute in which they ended.
- Pass criteria (exit status 1 with the reason when violated): no 5xx and no error inside a stream, running rows and
  queue back to 0 after the load, a plain request answered after it, a clean exit on SIGTERM. Reported, and failing
  only with `--strict`: RSS growth < 5% (mean RSS in the 5% of the run after its 25% mark, minute 5-6 of 20, against
  the mean in its last 5%) and the p95 of the last 25% of the run (the last 5 minutes of 20) within 20% of the p95 of
  the first 25% (0.8 <= ratio <= 1.2).

    .venv/bin/python server/soak.py                            # 20 minutes, 16 clients, the default model
    .venv/bin/python server/soak.py --minutes 1 --clients 8    # a short smoke run
    .venv/bin/python server/soak.py --report runs/soak-....jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import openai

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import PROMPTS, loopback_port, percentile

from steerwarm.serve.vllm_process import free_port

STATUSES = ("ok", "cancelled", "429", "4xx", "5xx", "stream_error", "conn", "stopped")
FAILED = ("5xx", "stream_error")  # a server failure: any of these fails the run
RSS_GROWTH_MAX = 0.05
P95_RATIO_RANGE = (0.8, 1.2)


@dataclass
class Minute:
    index: int
    latencies: list[float] = field(default_factory=list)
    plain: list[float] = field(default_factory=list)
    streamed: list[float] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    rss: list[float] = field(default_factory=list)
    rows: list[float] = field(default_factory=list)
    queue: list[float] = field(default_factory=list)


@dataclass
class Summary:
    duration: float
    minutes: list[Minute]
    counts: Counter[str]
    rss_from: float  # mean RSS (bytes) in the 5% of the run after its 25% mark
    rss_to: float  # mean RSS in the last 5% of the run
    p95_first: float  # p95 latency of the first 25% of the run
    p95_last: float  # ... of the last 25%
    errors: list[str]

    @property
    def rss_growth(self) -> float:
        return (self.rss_to - self.rss_from) / self.rss_from if self.rss_from > 0 else float("nan")

    @property
    def p95_ratio(self) -> float:
        return self.p95_last / self.p95_first if self.p95_first > 0 else float("nan")

    @property
    def rss_ok(self) -> bool:
        return self.rss_growth < RSS_GROWTH_MAX

    @property
    def p95_ok(self) -> bool:
        return P95_RATIO_RANGE[0] <= self.p95_ratio <= P95_RATIO_RANGE[1]


def _mean_in(samples: list[dict[str, Any]], lo: float, hi: float) -> float:
    """Mean RSS of the samples with lo <= t <= hi; the nearest sample's when none falls inside; nan with no RSS."""
    rss = [s for s in samples if s.get("rss")]
    inside = [s["rss"] for s in rss if lo <= s["t"] <= hi]
    if inside:
        return float(sum(inside) / len(inside))
    if not rss:
        return float("nan")
    mid = (lo + hi) / 2
    return float(min(rss, key=lambda s: abs(s["t"] - mid))["rss"])


def summarize(requests: list[dict[str, Any]], samples: list[dict[str, Any]], duration: float) -> Summary:
    """The per-minute rows and the headline numbers of a run of `duration` seconds (see the module doc)."""
    n = max(1, int(-(-duration // 60)))
    minutes = [Minute(i) for i in range(n)]
    counts: Counter[str] = Counter()
    first: list[float] = []
    last: list[float] = []
    errors: list[str] = []
    for r in requests:
        m = minutes[min(n - 1, max(0, int(r["end"] // 60)))]
        m.counts[r["status"]] += 1
        counts[r["status"]] += 1
        if r["status"] not in ("ok", "cancelled", "429", "stopped") and r.get("error"):
            errors.append(f"{r['status']}: {r['error']}")
        if r["status"] != "ok" or r.get("burst"):
            continue
        m.latencies.append(r["latency"])
        (m.streamed if r["stream"] else m.plain).append(r["latency"])
        if r["end"] < 0.25 * duration:
            first.append(r["latency"])
        elif r["end"] >= 0.75 * duration:
            last.append(r["latency"])
    for s in samples:
        if s["t"] > duration:
            continue
        m = minutes[min(n - 1, int(s["t"] // 60))]
        if s.get("rss"):
            m.rss.append(s["rss"])
        if s.get("running_rows") is not None:
            m.rows.append(s["running_rows"])
            m.queue.append(s["queue_depth"])
    return Summary(duration, minutes, counts,
                   rss_from=_mean_in(samples, 0.25 * duration, 0.30 * duration),
                   rss_to=_mean_in(samples, 0.95 * duration, duration),
                   p95_first=percentile(first, 0.95), p95_last=percentile(last, 0.95),
                   errors=sorted(Counter(errors), key=lambda e: -errors.count(e)))


def _f(x: float, spec: str = "6.2f") -> str:
    return format(x, spec) if x == x else format("-", ">" + spec.split(".")[0])


def report(s: Summary) -> str:
    """The per-minute table and the headline numbers, as printed at the end of a run."""
    head = (f"{'min':>3} {'done':>5} {'p50 s':>6} {'p95 s':>6} {'p95 plain':>9} {'p95 strm':>8} {'200':>5} "
            f"{'cancel':>6} {'429':>5} {'4xx':>4} {'5xx':>4} {'strerr':>6} {'conn':>4} {'stop':>4} "
            f"{'RSS MB':>7} {'rows':>4} {'queue':>5}")
    lines = ["latency: send to last byte of successful non-streamed requests and completed streams together "
             "(bursts and cancelled streams excluded); plain/strm: the two kinds apart; rows/queue: the most seen "
             "in a sample", head]
    for m in s.minutes:
        c = m.counts
        rss = max(m.rss) / 2**20 if m.rss else float("nan")
        lines.append(f"{m.index + 1:3d} {len(m.latencies):5d} {_f(percentile(m.latencies, 0.5))} "
                     f"{_f(percentile(m.latencies, 0.95))} {_f(percentile(m.plain, 0.95), '9.2f')} "
                     f"{_f(percentile(m.streamed, 0.95), '8.2f')} {c['ok']:5d} {c['cancelled']:6d} {c['429']:5d} "
                     f"{c['4xx']:4d} {c['5xx']:4d} {c['stream_error']:6d} {c['conn']:4d} {c['stopped']:4d} "
                     f"{_f(rss, '7.0f')} {_f(max(m.rows, default=float('nan')), '4.0f')} "
                     f"{_f(max(m.queue, default=float('nan')), '5.0f')}")
    c = s.counts
    lines.append(f"all {sum(c.values())} requests: " + ", ".join(f"{k} {c[k]}" for k in STATUSES))
    for e in s.errors[:5]:
        lines.append(f"  error: {e}")
    d = s.duration / 60
    growth = "ok" if s.rss_ok else "OVER 5%"
    lines.append(f"RSS growth over the last 75% of the run (minute {0.25 * d:.3g} to {d:.3g}): "
                 f"{s.rss_from / 2**20:.0f} -> {s.rss_to / 2**20:.0f} MB, {100 * s.rss_growth:+.2f}%   "
                 f"target < 5%  {growth}")
    lines.append(f"5xx: {c['5xx']}, errors inside streams: {c['stream_error']}   target 0  "
                 f"{'ok' if not any(c[k] for k in FAILED) else 'FAILED'}")
    lines.append(f"p95 latency, last 25% / first 25% of the run: {_f(s.p95_last, '.2f')} s / "
                 f"{_f(s.p95_first, '.2f')} s = {_f(s.p95_ratio, '.3f')}   target 0.8-1.2  "
                 f"{'ok' if s.p95_ok else 'MISSED'}")
    return "\n".join(lines)


def read_log(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The log's lines by type ("start", "request", "sample", "idle", "stopped", "summary"); a last line cut
    mid-write is skipped."""
    items: dict[str, list[dict[str, Any]]] = {}
    with path.open() as fh:
        for line in fh:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            items.setdefault(str(item.get("type")), []).append(item)
    return items


def rss_of(pid: int | None) -> int | None:
    """Resident set size of `pid` in bytes (psutil when installed, else /proc); None when unknown."""
    if pid is None:
        return None
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except ImportError:
        pass
    except Exception:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def listener_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1:`port` (psutil), for RSS with --url; None when it cannot be found."""
    try:
        import psutil

        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return int(conn.pid)
    except Exception:
        pass
    return None


class Soak:
    def __init__(self, args: argparse.Namespace, base_url: str, pid: int | None, log: IO[str]) -> None:
        self.args = args
        self.base_url = base_url
        self.pid = pid
        self.log = log
        self.rng = random.Random(args.seed)
        self.client = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=args.api_key or "none", max_retries=0,
                                         timeout=args.timeout)
        self.http = httpx.AsyncClient(base_url=base_url, timeout=10, trust_env=False)
        self.model = ""
        self.dial = False
        self.sent = 0
        self.t0 = 0.0

    def write(self, item: dict[str, Any]) -> None:
        self.log.write(json.dumps(item) + "\n")
        self.log.flush()

    async def health(self) -> dict[str, Any]:
        resp = await self.http.get("/health")
        resp.raise_for_status()
        return dict(resp.json())

    async def prepare(self) -> None:
        models = await self.client.models.list()
        self.model = models.data[0].id
        self.dial = bool((await self.health()).get("dial"))
        if not self.dial:
            print("the server has no dial: every request gets warmth 0", flush=True)

    def warmth(self) -> float:
        if not self.dial or self.rng.random() < 0.25:
            return 0.0
        return round(self.rng.uniform(-1.0, 1.0), 2)

    async def one(self, *, burst: bool = False) -> str:
        """One request drawn at random (see the module doc); its record goes to the log. Its status."""
        a, rng = self.args, self.rng
        chat = burst or rng.random() < a.chat_share
        stream = not burst and rng.random() < a.stream_share
        max_tokens = a.burst_max_tokens if burst else a.max_tokens
        cut = rng.randint(1, max(1, max_tokens // 2)) if stream and rng.random() < a.cancel_share else None
        prompt = PROMPTS[rng.randrange(len(PROMPTS))]
        warmth = self.warmth()
        rec: dict[str, Any] = {"type": "request", "kind": "chat" if chat else "completion", "stream": stream,
                               "burst": burst, "warmth": warmth, "cut": cut, "chunks": 0}
        start = time.perf_counter()
        rec["t"] = round(start - self.t0, 3)
        try:
            common: dict[str, Any] = {"model": self.model, "max_tokens": max_tokens, "temperature": 0,
                                      "extra_body": {"warmth": warmth}}
            if chat:
                call = self.client.chat.completions.create(messages=[{"role": "user", "content": prompt}],
                                                           stream=stream, **common)
            else:
                call = self.client.completions.create(prompt=prompt, stream=stream, **common)
            result = await call
            rec["status"] = "ok"
            if stream:
                async for _ in result:
                    rec["chunks"] += 1
                    if cut is not None and rec["chunks"] >= cut:
                        await result.close()
                        rec["status"] = "cancelled"
                        break
        except asyncio.CancelledError:
            rec["status"] = "stopped"  # in flight when the load stopped: its connection is dropped
        except openai.APIStatusError as exc:
            code = exc.status_code
            rec["code"] = code
            rec["status"] = "429" if code == 429 else "5xx" if code >= 500 else "4xx"
            rec["error"] = f"HTTP {code}: {exc.message}"[:300]
        except openai.APIConnectionError as exc:
            rec["status"] = "conn"
            rec["error"] = f"{type(exc).__name__}: {exc}"[:300]
        except openai.APIError as exc:  # an error event inside a stream that had answered 200
            rec["status"] = "stream_error"
            rec["error"] = str(exc)[:300]
        end = time.perf_counter()
        rec["end"] = round(end - self.t0, 3)
        rec["latency"] = round(end - start, 4)
        self.write(rec)
        if rec["status"] == "stopped":
            raise asyncio.CancelledError
        return str(rec["status"])

    def take(self) -> bool:
        """Count one more request against --max-requests; False once the budget is spent."""
        if self.sent >= self.args.max_requests:
            return False
        self.sent += 1
        return True

    async def client_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set() and self.take():
            if await self.one() in ("429", "conn"):
                await asyncio.sleep(0.2)  # the queue is full (a burst) or the server is gone: do not spin

    async def bursts(self, stop: asyncio.Event) -> None:
        k = 0
        while True:
            at = self.t0 + 30 + 60 * k
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, at - time.perf_counter()))
                return
            except TimeoutError:
                pass
            n = sum(1 for _ in range(self.args.burst) if self.take())
            print(f"{at - self.t0:6.0f} s: burst of {n} requests", flush=True)
            await asyncio.gather(*(self.one(burst=True) for _ in range(n)), return_exceptions=True)
            k += 1

    async def sampler(self, stop: asyncio.Event) -> None:
        while True:
            item: dict[str, Any] = {"type": "sample", "t": round(time.perf_counter() - self.t0, 3),
                                    "rss": rss_of(self.pid)}
            try:
                h = await self.health()
                item["running_rows"], item["queue_depth"] = h["running_rows"], h["queue_depth"]
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                item["error"] = str(exc)[:200]
            self.write(item)
            try:
                await asyncio.wait_for(stop.wait(), self.args.sample_seconds)
                return
            except TimeoutError:
                pass

    async def run(self) -> tuple[float, list[str]]:
        """Drive the load for --minutes; then the after-load checks. (the run's length in s, failures)"""
        duration = 60.0 * self.args.minutes
        stop = asyncio.Event()
        self.t0 = time.perf_counter()
        tasks = [asyncio.create_task(self.client_loop(stop)) for _ in range(self.args.clients)]
        tasks += [asyncio.create_task(self.bursts(stop)), asyncio.create_task(self.sampler(stop))]
        budget = asyncio.gather(*tasks[: self.args.clients])  # ends early only when --max-requests is spent
        try:
            await asyncio.wait_for(asyncio.shield(budget), duration)
        except TimeoutError:
            pass
        duration = min(duration, time.perf_counter() - self.t0)
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, budget, return_exceptions=True)
        return duration, await self.after()

    async def after(self) -> list[str]:
        """The server must go idle once the load stops, and still answer a plain request."""
        failures = []
        deadline = time.monotonic() + self.args.idle_timeout
        seen: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                seen = await self.health()
            except httpx.HTTPError as exc:
                seen = {"error": str(exc)}
            if seen.get("running_rows") == 0 and seen.get("queue_depth") == 0:
                break
            await asyncio.sleep(0.25)
        idle_after = time.monotonic() - (deadline - self.args.idle_timeout)
        self.write({"type": "idle", "after": round(idle_after, 3), "health": seen})
        if seen.get("running_rows") != 0 or seen.get("queue_depth") != 0:
            failures.append(f"running_rows/queue_depth not back to 0 within {self.args.idle_timeout:g} s after the "
                            f"load stopped: /health says {seen}")
        else:
            print(f"idle {idle_after:.2f} s after the load stopped: running_rows 0, queue_depth 0", flush=True)
        try:
            r = await self.client.chat.completions.create(model=self.model, max_tokens=4, temperature=0,
                                                          messages=[{"role": "user", "content": PROMPTS[0]}])
            if not r.choices:
                failures.append("the request after the load got no choice")
        except openai.APIError as exc:
            failures.append(f"a plain request after the load failed: {exc}")
        return failures

    async def close(self) -> None:
        await self.client.close()
        await self.http.aclose()


def start_server(args: argparse.Namespace, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`steerwarm serve` on a free 127.0.0.1 port; returns once /health answers (or exits with its log)."""
    port = free_port()
    cmd = [sys.executable, "-m", "steerwarm.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--model", args.model, "--max-batch", str(args.max_batch), "--max-queue", str(args.max_queue),
           *(["--threads", str(args.threads)] if args.threads else []),
           *(["--vectors", args.vectors] if args.vectors else []), *shlex.split(args.serve_args)]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    if args.api_key:
        env["STEERWARM_API_KEY"] = args.api_key
    with log_path.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + args.start_timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health", timeout=2, trust_env=False).status_code == 200:
                print(f"started {shlex.join(cmd[2:])} (pid {proc.pid}; log {log_path})", flush=True)
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(proc, 5)
    raise SystemExit(f"the server did not start (exit {proc.returncode}):\n{log_path.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen[bytes], grace: float) -> int:
    """SIGTERM (the server drains), then SIGKILL after `grace` s; the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Soak and storm a steerwarm server on this machine (see the module doc).")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--url", help="attack this running server (http://127.0.0.1:PORT) instead of starting one")
    where.add_argument("--report", type=Path, help="only print the tables of an existing log")
    ap.add_argument("--model", default="smollm2-135m", help="model (name or folder) of the server started here")
    ap.add_argument("--vectors", default=None, help="--vectors of the server started here")
    ap.add_argument("--threads", type=int, default=None, help="--threads of the server started here")
    ap.add_argument("--max-batch", type=int, default=16, help="--max-batch of the server started here")
    ap.add_argument("--max-queue", type=int, default=16, help="--max-queue of the server started here")
    ap.add_argument("--serve-args", default="", help="more options for the server started here (one string)")
    ap.add_argument("--api-key", default=os.environ.get("STEERWARM_API_KEY"))
    ap.add_argument("--pid", type=int, default=None, help="with --url: the server's pid for RSS (default: the "
                                                          "process listening on the port)")
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--chat-share", type=float, default=0.5, help="share of chat requests (the rest: completions)")
    ap.add_argument("--stream-share", type=float, default=0.5, help="share of streamed requests")
    ap.add_argument("--cancel-share", type=float, default=0.3, help="share of streams the client closes mid-way")
    ap.add_argument("--burst", type=int, default=None, help="requests per burst (default: max batch + max queue + "
                                                            "clients; with --url, 256 + 32 + clients)")
    ap.add_argument("--burst-max-tokens", type=int, default=8)
    ap.add_argument("--max-requests", type=int, default=200_000, help="most requests in all, bursts included")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    ap.add_argument("--sample-seconds", type=float, default=5.0)
    ap.add_argument("--idle-timeout", type=float, default=30.0, help="seconds the server has to go idle after the "
                                                                     "load")
    ap.add_argument("--start-timeout", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log", type=Path, default=None, help="JSONL log (default: runs/soak-TIME.jsonl)")
    ap.add_argument("--strict", action="store_true", help="also fail on RSS growth >= 5%% or a p95 ratio outside "
                                                          "0.8-1.2")
    args = ap.parse_args(argv)
    if args.burst is None:
        args.burst = (256 + 32 if args.url else args.max_batch + args.max_queue) + args.clients
    return args


def verdict(s: Summary, failures: list[str], strict: bool) -> int:
    """Print the failures (the run's and the summary's) and return the exit status."""
    failures = list(failures)
    if any(s.counts[k] for k in FAILED):
        failures.append(f"{s.counts['5xx']} 5xx and {s.counts['stream_error']} errors inside streams (want none)")
    if strict and not s.rss_ok:
        failures.append(f"RSS grew {100 * s.rss_growth:+.2f}% over the last 75% of the run (want < 5%)")
    if strict and not s.p95_ok:
        failures.append(f"p95 ratio last/first {s.p95_ratio:.3f} (want 0.8-1.2)")
    for f in failures:
        print(f"FAILED: {f}")
    print("soak: FAILED" if failures else "soak: passed")
    return 1 if failures else 0


def report_log(path: Path, strict: bool) -> int:
    """--report: the tables and the verdict of an existing log (one cut short has no after-load checks: failed)."""
    items = read_log(path)
    requests, samples = items.get("request", []), items.get("sample", [])
    done = items.get("summary")
    if done:
        duration, failures = float(done[-1]["duration"]), list(done[-1]["failures"])
    else:
        duration = max((r["end"] for r in requests), default=0.0)
        failures = ["the run did not finish (no summary line): the after-load checks did not run"]
    s = summarize(requests, samples, duration)
    print(report(s))
    return verdict(s, failures, strict)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        return report_log(args.report, args.strict)
    log_path = args.log or Path("runs") / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    proc = None
    if args.url:
        base = args.url.rstrip("/").removesuffix("/v1")
        port = loopback_port(base)  # stops the script for any address but this machine's
        pid = args.pid or listener_pid(port)
    else:
        proc, base = start_server(args, log_path.with_suffix(".server.log"))
        pid = proc.pid
    if pid is None:
        print("no pid for the server: RSS is not sampled (pass --pid)", flush=True)
    failures: list[str] = []
    try:
        with log_path.open("w") as log:
            soak = Soak(args, base, pid, log)

            async def go() -> tuple[float, list[str]]:
                try:
                    await soak.prepare()
                    soak.write({"type": "start", "url": base, "pid": pid, "model": soak.model, "dial": soak.dial,
                                **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}})
                    print(f"{args.clients} clients for {args.minutes:g} min against {base} ({soak.model}); "
                          f"bursts of {args.burst}; log {log_path}", flush=True)
                    return await soak.run()
                finally:
                    await soak.close()

            duration, failures = asyncio.run(go())
            if proc is not None:
                status = stop_server(proc, 60)
                soak.write({"type": "stopped", "exit_status": status})
                if status != 0:
                    failures.append(f"the server exited with {status} after SIGTERM (want 0)")
                else:
                    print("the server exited 0 after SIGTERM", flush=True)
            items = read_log(log_path)
            s = summarize(items.get("request", []), items.get("sample", []), duration)
            soak.write({"type": "summary", "duration": duration, "counts": dict(s.counts),
                        "rss_growth": s.rss_growth, "p95_first": s.p95_first, "p95_last": s.p95_last,
                        "p95_ratio": s.p95_ratio, "failures": failures})
    finally:
        if proc is not None:
            stop_server(proc, 5)
    print(report(s))
    return verdict(s, failures, args.strict)


if __name__ == "__main__":
    sys.exit(main())
