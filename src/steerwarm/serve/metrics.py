"""Prometheus metrics in the text exposition format (0.0.4), without a client library.

Invariants:
- Counters only grow; every update happens under one lock, so a scrape sees a consistent snapshot.
- Gauges that describe the engine (queue depth, running rows) are read from it at scrape time, never cached.
- Label values are escaped per the exposition format, so no request content can break the output.
- Per-key series are labelled by the key's id (`steerwarm.serve.keys`), taken from the request's context; a key
  itself never reaches this module.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Callable

from steerwarm.serve.keys import current_key

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: dict[str, str]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in pairs.items()) + "}"


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str], int] = defaultdict(int)
        self.latency: dict[str, _Histogram] = {}
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.key_requests: dict[tuple[str, str], int] = defaultdict(int)  # (key id, status)
        self.key_tokens: dict[tuple[str, str], int] = defaultdict(int)  # (key id, "prompt" or "completion")
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        self.counters: dict[str, tuple[str, Callable[[], float]]] = {}

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        key = current_key.get()
        with self._lock:
            self.requests[(endpoint, str(status))] += 1
            if key is not None:
                self.key_requests[(key.id, str(status))] += 1
            hist = self.latency.setdefault(endpoint, _Histogram(LATENCY_BUCKETS))
            hist.observe(seconds)

    def add_tokens(self, prompt: int, completion: int) -> None:
        key = current_key.get()
        with self._lock:
            self.prompt_tokens += prompt
            self.completion_tokens += completion
            if key is not None:
                self.key_tokens[(key.id, "prompt")] += prompt
                self.key_tokens[(key.id, "completion")] += completion

    def gauge(self, name: str, help_: str, read: Callable[[], float]) -> None:
        self.gauges[name] = (help_, read)

    def counter(self, name: str, help_: str, read: Callable[[], float]) -> None:
        self.counters[name] = (help_, read)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            lines += ["# HELP steerwarm_requests_total HTTP requests by endpoint and status code.",
                      "# TYPE steerwarm_requests_total counter"]
            for (endpoint, status), n in sorted(self.requests.items()):
                lines.append(f"steerwarm_requests_total{_labels({'endpoint': endpoint, 'status': status})} {n}")
            lines += ["# HELP steerwarm_prompt_tokens_total Prompt tokens of finished requests.",
                      "# TYPE steerwarm_prompt_tokens_total counter",
                      f"steerwarm_prompt_tokens_total {self.prompt_tokens}",
                      "# HELP steerwarm_completion_tokens_total Generated tokens of finished requests.",
                      "# TYPE steerwarm_completion_tokens_total counter",
                      f"steerwarm_completion_tokens_total {self.completion_tokens}",
                      "# HELP steerwarm_key_requests_total Authenticated requests by API key id and status code.",
                      "# TYPE steerwarm_key_requests_total counter"]
            for (kid, status), n in sorted(self.key_requests.items()):
                lines.append(f"steerwarm_key_requests_total{_labels({'key': kid, 'status': status})} {n}")
            lines += ["# HELP steerwarm_key_tokens_total Tokens of finished requests by API key id and kind.",
                      "# TYPE steerwarm_key_tokens_total counter"]
            for (kid, kind), n in sorted(self.key_tokens.items()):
                lines.append(f"steerwarm_key_tokens_total{_labels({'key': kid, 'kind': kind})} {n}")
            lines += ["# HELP steerwarm_request_latency_seconds Time from request to last byte, by endpoint.",
                      "# TYPE steerwarm_request_latency_seconds histogram"]
            for endpoint, hist in sorted(self.latency.items()):
                cum = 0
                for bound, count in zip((*hist.buckets, float("inf")), hist.counts, strict=True):
                    cum += count
                    le = "+Inf" if bound == float("inf") else repr(bound)
                    lines.append(f"steerwarm_request_latency_seconds_bucket"
                                 f"{_labels({'endpoint': endpoint, 'le': le})} {cum}")
                lines.append(f"steerwarm_request_latency_seconds_sum{_labels({'endpoint': endpoint})} {hist.sum}")
                lines.append(f"steerwarm_request_latency_seconds_count{_labels({'endpoint': endpoint})} {hist.count}")
        for kind, table in (("counter", self.counters), ("gauge", self.gauges)):
            for name, (help_, read) in sorted(table.items()):
                lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} {float(read())}"]
        return "\n".join(lines) + "\n"
