"""Load test for a running steerwarm server: N concurrent clients, three warmth scenarios, measured side by side.

Scenarios, each with --clients concurrent clients sending chat requests back to back for --duration seconds (and at
most --max-requests requests): all warmth 0, all warmth --hot (default 1), and mixed warmth across clients (client i
gets MIXED[i % 5]). A fourth run uses --baseline-clients (default 1) at warmth 0, for the scaling ratio. The runs are
interleaved in --rounds rounds, in a rotated order, so machine noise falls on every scenario alike.

Throughput is read from the server's own counter (`steerwarm_generated_tokens_total` on /metrics) over a window
that opens --ramp seconds after the clients start and closes at --duration, so every run is measured in steady
state, with no start-up or drain; when the window closes, requests in flight are aborted (their disconnects free
the rows) and the next run starts on an idle server. Prints per scenario: completed requests, their mean tokens,
aggregate tokens/s, p50/p95 latency of completed requests; then the ratios (all hot)/(all 0) and (mixed)/(all 0)
(target >= 0.95) and N-client / baseline throughput (target >= 4x).

Only ever targets this machine (127.0.0.1 or localhost); it refuses any other host.

    .venv/bin/python server/load_test.py --clients 16 --duration 20 --rounds 2
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

MIXED = (-1.0, -0.5, 0.0, 0.5, 1.0)
PROMPTS = (
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain in detail how bread is made, from flour to loaf.",
    "Describe a walk through a forest in autumn, with all five senses.",
    "Tell me about the history of the bicycle.",
    "Write a letter to a friend who just moved to another city.",
    "Explain how a rainbow forms, step by step.",
    "Describe your ideal weekend, hour by hour.",
    "Write a long poem about the sea at night.",
)


@dataclass
class Run:
    name: str
    clients: int
    latencies: list[float] = field(default_factory=list)
    tokens: int = 0  # completion tokens of requests that completed (client side)
    window_tokens: float = 0.0  # tokens the server generated inside the measuring window
    window: float = 0.0
    errors: list[str] = field(default_factory=list)

    def merge(self, other: Run) -> None:
        self.latencies += other.latencies
        self.tokens += other.tokens
        self.window_tokens += other.window_tokens
        self.window += other.window
        self.errors += other.errors

    @property
    def tps(self) -> float:
        return self.window_tokens / self.window if self.window else 0.0


def percentile(values: list[float], q: float) -> float:
    """The q-quantile of `values` (nearest rank, no interpolation); nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def loopback_port(base_url: str) -> int:
    """The port of an http://127.0.0.1 (or localhost) URL; any other URL stops the script: load only this machine."""
    url = urlparse(base_url)
    if url.hostname not in ("127.0.0.1", "localhost") or url.scheme != "http":
        raise SystemExit(f"refusing to load-test {base_url}: only http://127.0.0.1 (this machine) is allowed")
    return url.port or 80


class Client:
    def __init__(self, host: str, port: int, api_key: str | None, model: str, max_tokens: int) -> None:
        self.host, self.port = host, port
        self.conn = http.client.HTTPConnection(host, port, timeout=600)
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.model = model
        self.max_tokens = max_tokens

    def get(self, path: str) -> str:
        """One GET on a fresh connection (an idle keep-alive connection may have been closed by the server)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request("GET", path, headers=self.headers)
            resp = conn.getresponse()
            body = resp.read().decode()
        finally:
            conn.close()
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {resp.status}: {body[:200]}")
        return body

    def chat(self, prompt: str, warmth: float) -> int:
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": prompt}],
                           "max_tokens": self.max_tokens, "temperature": 0, "warmth": warmth})
        self.conn.request("POST", "/v1/chat/completions", body=body, headers=self.headers)
        resp = self.conn.getresponse()
        data = json.loads(resp.read())
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {data.get('error', {}).get('message', data)}")
        return int(data["usage"]["completion_tokens"])

    def abort(self) -> None:
        """Drop the connection under a request in flight (the server frees its row)."""
        sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.conn.close()


def server_state(monitor: Client) -> tuple[float, dict[str, float]]:
    """(tokens the server has generated so far, /health fields)."""
    tokens = 0.0
    for line in monitor.get("/metrics").splitlines():
        if line.startswith("steerwarm_generated_tokens_total "):
            tokens = float(line.split()[1])
    return tokens, json.loads(monitor.get("/health"))


def run_scenario(name: str, warmths: list[float], args: argparse.Namespace, host: str, port: int,
                 monitor: Client) -> Run:
    """Clients send back to back; the server's own token counter is read over [ramp, duration]; then in-flight
    requests are aborted (disconnects free their rows) and the server is left idle for the next run."""
    run = Run(name, len(warmths))
    lock = threading.Lock()
    budget = [args.max_requests]
    stop = threading.Event()
    clients = [Client(host, port, args.api_key, args.model, args.max_tokens) for _ in warmths]

    def worker(i: int) -> None:
        client, k = clients[i], i
        while not stop.is_set():
            with lock:
                if budget[0] <= 0:
                    run.errors.append("request budget exhausted before the window ended")
                    return
                budget[0] -= 1
            t0 = time.perf_counter()
            try:
                n = client.chat(PROMPTS[k % len(PROMPTS)], warmths[i])
            except Exception as exc:
                if stop.is_set():
                    return  # aborted at the end of the window
                with lock:
                    run.errors.append(str(exc))
                client.close()
                continue
            with lock:
                run.latencies.append(time.perf_counter() - t0)
                run.tokens += n
            k += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(warmths))]
    for t in threads:
        t.start()
    try:
        time.sleep(args.ramp)
        c0, _ = server_state(monitor)
        w0 = time.perf_counter()
        time.sleep(max(0.0, start + args.duration - time.perf_counter()))
        c1, health = server_state(monitor)
        run.window = time.perf_counter() - w0
        run.window_tokens = c1 - c0
    finally:
        stop.set()
        for c in clients:
            c.abort()
        for t in threads:
            t.join()
        for c in clients:
            c.close()
    deadline = time.monotonic() + 120
    while health["running_rows"] or health["queue_depth"]:
        if time.monotonic() > deadline:
            raise SystemExit(f"the server did not go idle after {name}: {health}")
        time.sleep(0.2)
        _, health = server_state(monitor)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description="Load-test a running steerwarm server (127.0.0.1 only).")
    ap.add_argument("--base-url", default="http://127.0.0.1:8000")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--baseline-clients", type=int, default=1)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per run (ramp included)")
    ap.add_argument("--ramp", type=float, default=4.0, help="seconds before the measuring window opens")
    ap.add_argument("--max-requests", type=int, default=2000, help="most requests per run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--hot", type=float, default=1.0, help="warmth of the 'all hot' scenario")
    ap.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the server to answer /health")
    args = ap.parse_args()

    host, port = "127.0.0.1", loopback_port(args.base_url)

    deadline = time.monotonic() + args.wait
    monitor = Client(host, port, args.api_key, args.model, 4)
    while True:  # wait for the server to come up
        try:
            server_state(monitor)
            break
        except OSError:
            monitor.close()
            if time.monotonic() > deadline:
                raise SystemExit(f"no server answers at {args.base_url}") from None
            time.sleep(0.5)
    monitor.chat(PROMPTS[0], 0.0)  # warm-up, and a check that the dial is there
    monitor.chat(PROMPTS[0], args.hot)

    n = args.clients
    plans = {
        f"all warmth 0 ({n})": [0.0] * n,
        f"all warmth {args.hot:g} ({n})": [args.hot] * n,
        f"mixed warmth ({n})": [MIXED[i % len(MIXED)] for i in range(n)],
        f"all warmth 0 ({args.baseline_clients})": [0.0] * args.baseline_clients,
    }
    names = list(plans)
    totals = {name: Run(name, len(plans[name])) for name in names}
    per_round: list[dict[str, float]] = []
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        per_round.append({})
        for name in order:
            run = run_scenario(name, plans[name], args, host, port, monitor)
            totals[name].merge(run)
            per_round[-1][name] = run.tps
            print(f"round {r + 1} {name:>22}: {run.tps:7.1f} tok/s  {len(run.latencies):4d} requests completed  "
                  f"{len(run.errors)} errors", flush=True)

    print(f"\n{'scenario':>24} {'requests':>8} {'tokens':>7} {'tok/req':>7} {'tok/s':>7} {'p50 s':>6} {'p95 s':>6}")
    for name in names:
        t = totals[name]
        per = t.tokens / len(t.latencies) if t.latencies else 0.0
        print(f"{name:>24} {len(t.latencies):8d} {t.tokens:7d} {per:7.1f} {t.tps:7.1f} "
              f"{statistics.median(t.latencies) if t.latencies else float('nan'):6.2f} "
              f"{percentile(t.latencies, 0.95):6.2f}")
        for e in sorted(set(t.errors))[:3]:
            print(f"{'':>24} error: {e}")
    base = totals[names[0]].tps
    hot_ratio = totals[names[1]].tps / base if base else float("nan")
    mixed_ratio = totals[names[2]].tps / base if base else float("nan")
    single = totals[names[3]].tps
    scale = base / single if single else float("nan")
    def round_median(top: str, bottom: str) -> float:
        vals = [x[top] / x[bottom] for x in per_round if x.get(bottom)]
        return statistics.median(vals) if vals else float("nan")

    print("\nratios of pooled throughput (and the median of the per-round ratios):")
    print(f"(all warmth {args.hot:g}) / (all warmth 0): {hot_ratio:.3f} ({round_median(names[1], names[0]):.3f})   "
          f"target >= 0.95  {'ok' if hot_ratio >= 0.95 else 'MISSED'}")
    print(f"(mixed) / (all warmth 0):     {mixed_ratio:.3f} ({round_median(names[2], names[0]):.3f})   "
          f"target >= 0.95  {'ok' if mixed_ratio >= 0.95 else 'MISSED'}")
    print(f"{n} clients / {args.baseline_clients} client(s), warmth 0: {scale:.2f}x "
          f"({round_median(names[0], names[3]):.2f}x)   target >= 4x  {'ok' if scale >= 4 else 'MISSED'}")


if __name__ == "__main__":
    main()
