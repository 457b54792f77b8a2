"""server/soak.py's summary on synthetic logs: which requests count in the latency, the per-minute rows, the RSS
growth and p95-ratio windows (scaled to the run's length), the verdict's exit status, and a log cut mid-line.
The script's load itself is a benchmark, run by hand (server/README.md, "Soak and storm")."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "server" / "soak.py"
MB = 2**20


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak_script"] = module
    spec.loader.exec_module(module)
    return module


soak = _load()


def req(end: float, latency: float, status: str = "ok", *, stream: bool = False, burst: bool = False,
        error: str | None = None) -> dict[str, Any]:
    return {"type": "request", "end": end, "latency": latency, "status": status, "stream": stream, "burst": burst,
            "error": error}


def sample(t: float, rss_mb: float, rows: int = 3, queue: int = 0) -> dict[str, Any]:
    return {"type": "sample", "t": t, "rss": rss_mb * MB, "running_rows": rows, "queue_depth": queue}


def twenty_minutes() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    requests = [req(10.0 + i, 1.0 + i / 100, stream=i % 2 == 1) for i in range(20)]  # first 5 minutes: 1.00-1.19
    requests += [req(1000.0 + i, 2.0 + i / 100) for i in range(20)]  # last 5 minutes: 2.00-2.19
    requests += [req(30.0, 50.0, burst=True), req(31.0, 0.01, "429", burst=True), req(40.0, 60.0, "cancelled",
                                                                                          stream=True),
                 req(700.0, 0.5, "5xx", error="HTTP 500: boom"), req(1300.0, 1.0, "stopped")]
    samples = [sample(t, 1000.0) for t in range(0, 360, 5)]  # minute 5-6: 1000 MB
    samples += [sample(t, 1500.0) for t in range(365, 1140, 5)]  # in between: not in either window
    samples += [sample(t, 1030.0, rows=7, queue=2) for t in range(1140, 1201, 5)]  # last minute: 1030 MB
    return requests, samples


def test_twenty_minutes_windows_and_rows() -> None:
    requests, samples = twenty_minutes()
    s = soak.summarize(requests, samples, 1200.0)
    assert len(s.minutes) == 20
    assert s.rss_from == 1000 * MB and s.rss_to == 1030 * MB
    assert s.rss_growth == pytest.approx(0.03) and s.rss_ok
    assert s.p95_first == pytest.approx(1.19) and s.p95_last == pytest.approx(2.19)  # the burst's 50 s left out
    assert s.p95_ratio == pytest.approx(2.19 / 1.19) and not s.p95_ok
    first = s.minutes[0]
    assert len(first.latencies) == 20 and len(first.streamed) == 10 and len(first.plain) == 10
    assert first.counts == {"ok": 21, "429": 1, "cancelled": 1}  # the burst's 200 counts, not its latency
    assert s.minutes[19].counts == {"stopped": 1}  # ended after the deadline: the last minute
    assert max(s.minutes[19].rows) == 7 and max(s.minutes[19].queue) == 2
    assert s.counts["5xx"] == 1 and s.errors == ["5xx: HTTP 500: boom"]
    table = soak.report(s)
    assert "+3.00%" in table and "5xx: 1" in table and "MISSED" in table


def test_short_run_scales_the_windows() -> None:
    samples = [sample(t, 100.0 + t) for t in range(0, 61, 3)]
    requests = [req(5.0, 1.0), req(10.0, 1.0), req(50.0, 1.1), req(59.0, 1.1)]
    s = soak.summarize(requests, samples, 60.0)
    assert len(s.minutes) == 1
    assert s.rss_from == pytest.approx((115 + 118) / 2 * MB)  # samples in [15, 18] s
    assert s.rss_to == pytest.approx((157 + 160) / 2 * MB)  # samples in [57, 60] s
    assert s.p95_ratio == pytest.approx(1.1) and s.p95_ok


def test_verdict_and_cut_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    requests, samples = twenty_minutes()
    s = soak.summarize(requests, samples, 1200.0)
    assert soak.verdict(s, [], strict=False) == 1  # the 5xx
    clean = soak.summarize([r for r in requests if r["status"] != "5xx"], samples, 1200.0)
    assert soak.verdict(clean, [], strict=False) == 0  # the p95 ratio is only reported ...
    assert soak.verdict(clean, [], strict=True) == 1  # ... unless --strict
    assert soak.verdict(clean, ["running_rows/queue_depth not back to 0"], strict=False) == 1
    assert "FAILED: running_rows/queue_depth not back to 0" in capsys.readouterr().out
    log = tmp_path / "soak.jsonl"
    log.write_text("".join(json.dumps(x) + "\n" for x in [*requests, *samples]) + '{"type": "requ')
    items = soak.read_log(log)
    assert len(items["request"]) == len(requests) and len(items["sample"]) == len(samples)
    assert soak.report_log(log, strict=False) == 1  # no summary line: the after-load checks did not run
