"""server/ is for deploying: the committed deployment files work with the real tools.

- Real Prometheus (Debian's package) runs the committed scrape config and alert rules (only the target, the
  intervals and the key file are filled in) against a real `steerwarm serve` with an API key on the tiny model,
  and reads back through its query API exactly the requests the official openai client sent, by endpoint and status;
  the alert rules load and evaluate without error on the real series, and the p95 latency expression they use
  gives a number.
- `promtool check rules` / `check config` pass on the committed files, and `promtool test rules` runs the rules'
  unit tests (tests/serve/steerwarm-alerts.test.yml: each alert fires on a synthetic series, not on its neighbour).
- The systemd unit passes `systemd-analyze verify` (skipped where systemd-analyze is absent) with no warning, and its
  offline security exposure stays low; the launch script and the unit use only options `steerwarm serve` has.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
import typer
import yaml
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam

from steerwarm.cli.app import app
from tests.conftest import make_tiny_model, make_tokenizer
from tests.serve.conftest import RunningServer, free_port, running, serve
from tests.system_tools import require_binary

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "server" / "deploy"
RULES = DEPLOY / "steerwarm-alerts.yml"
UNIT = DEPLOY / "steerwarm.service"
KEY = "deploy-test-key"
ALERTS = ["SteerwarmDown", "SteerwarmQueueBacklog", "SteerwarmRejectingRequests", "SteerwarmSlowResponses",
          "SteerwarmGenerationFailures", "SteerwarmBatchResets"]
HINT = "Debian package prometheus"


@dataclass(frozen=True)
class Prometheus:
    url: str
    log: Path

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=5) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])


def deploy_dir(tmp: Path, target: str | None = None) -> Path:
    """The committed prometheus.yml and alert rules in `tmp`, with the key file they name; with `target`, scraping
    that address every second (everything else as committed)."""
    cfg = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    if target is not None:
        cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
        (job,) = cfg["scrape_configs"]
        job["static_configs"][0]["targets"] = [target]
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    shutil.copy(RULES, tmp / RULES.name)
    (tmp / cfg["scrape_configs"][0]["authorization"]["credentials_file"]).write_text(KEY + "\n")
    return tmp / "prometheus.yml"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("deploy-model") / "tiny"
    make_tiny_model(layers=2).save_pretrained(str(folder))
    make_tokenizer().save_pretrained(str(folder))
    vectors = tmp_path_factory.mktemp("deploy-vectors")  # empty: no dial, nothing to register
    with serve(["--model", str(folder), "--vectors", str(vectors), "--threads", "1", "--api-key", KEY],
               folder.parent / "server.log") as running:
        yield running


@pytest.fixture(scope="module")
def prometheus(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = require_binary("prometheus", HINT)
    tmp = tmp_path_factory.mktemp("prometheus")
    config = deploy_dir(tmp / "etc", target=server.base_url.removeprefix("http://"))
    prom = Prometheus(f"http://127.0.0.1:{free_port()}", tmp / "prometheus.log")
    cmd = [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
           f"--web.listen-address={prom.url.removeprefix('http://')}", "--log.level=warn"]
    with running(cmd, prom.log, prom.url + "/-/ready", "prometheus", 30, stop_timeout=15):
        yield prom


def eventually(read: Any, want: Any, prom: Prometheus, timeout: float = 20.0) -> Any:
    """Poll `read()` until it equals `want` (Prometheus scrapes every second); the last value otherwise."""
    deadline = time.monotonic() + timeout
    got = read()
    while got != want and time.monotonic() < deadline:
        time.sleep(0.5)
        got = read()
    return got


def test_prometheus_reads_back_the_requests_sent(server: RunningServer, prometheus: Prometheus) -> None:
    # the scrape authenticates with the key file the committed config names (the server wants the key on /metrics)
    up = eventually(lambda: [r["value"][1] for r in prometheus.query('up{job="steerwarm"}')], ["1"], prometheus)
    assert up == ["1"], prometheus.log.read_text()
    client = OpenAI(base_url=server.v1, api_key=KEY, max_retries=0, timeout=60)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "i feel sad today"}]

    def chat() -> None:
        r = client.chat.completions.create(model="tiny", messages=messages, max_tokens=3, temperature=0)
        assert r.usage is not None and r.usage.completion_tokens == 3

    def requests() -> dict[tuple[str, str], float]:
        rows = prometheus.query('steerwarm_requests_total{job="steerwarm",endpoint=~"/v1/.*"}')
        return {(r["metric"]["endpoint"], r["metric"]["status"]): float(r["value"][1]) for r in rows}

    # one request first, scraped, so that the latency histogram's series exist before the next ones (a series
    # appears with its first observation, and rate() sees only increases after that)
    chat()
    first = {("/v1/chat/completions", "200"): 1.0}
    assert eventually(requests, first, prometheus) == first, prometheus.log.read_text()
    chat()
    chat()
    client.completions.create(model="tiny", prompt="hello there", max_tokens=2, temperature=0)
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=server.v1, api_key="wrong", max_retries=0).chat.completions.create(
            model="tiny", messages=messages, max_tokens=3)
    with pytest.raises(openai.BadRequestError):  # no dial is loaded on this server
        client.chat.completions.create(model="tiny", messages=messages, max_tokens=3, extra_body={"warmth": 1.0})

    want = {("/v1/chat/completions", "200"): 3.0, ("/v1/chat/completions", "401"): 1.0,
            ("/v1/chat/completions", "400"): 1.0, ("/v1/completions", "200"): 1.0}
    assert eventually(requests, want, prometheus) == want, prometheus.log.read_text()
    # the series carry the config's labels, and the alerts' p95 expression gives a latency on them
    (row,) = prometheus.query('steerwarm_requests_total{endpoint="/v1/completions"}')
    assert row["metric"]["service"] == "steerwarm" and row["metric"]["instance"] == server.base_url[7:]
    p95 = [float(r["value"][1]) for r in prometheus.query(
        'histogram_quantile(0.95, sum by (le) (rate(steerwarm_request_latency_seconds_bucket'
        '{endpoint="/v1/chat/completions"}[1m])))')]
    assert len(p95) == 1 and math.isfinite(p95[0]) and 0 < p95[0] <= 120, p95


def test_prometheus_loads_and_evaluates_the_alert_rules(prometheus: Prometheus) -> None:
    def rules() -> list[tuple[str, str]]:
        groups = prometheus.get("/api/v1/rules")["groups"]
        return [(r["name"], r["health"]) for g in groups for r in g["rules"]]

    got = eventually(rules, [(name, "ok") for name in ALERTS], prometheus)
    assert got == [(name, "ok") for name in ALERTS], got
    firing = prometheus.get("/api/v1/alerts")["alerts"]
    assert firing == [], firing  # an idle, healthy server pages nobody


def test_promtool_checks_and_unit_tests_the_committed_files(tmp_path: Path) -> None:
    promtool = require_binary("promtool", HINT)
    checks = [[promtool, "check", "rules", str(RULES)], [promtool, "check", "config", str(deploy_dir(tmp_path))],
              [promtool, "test", "rules", "steerwarm-alerts.test.yml"]]
    for cmd in checks:
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parent, timeout=60)
        assert res.returncode == 0 and "SUCCESS" in res.stdout, f"{cmd}:\n{res.stdout}\n{res.stderr}"
    assert f"{len(ALERTS)} rules found" in subprocess.run(checks[0], capture_output=True, text=True).stdout
    # the unit tests can fail: an alert rule that never fires is caught
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / RULES.name).write_text(RULES.read_text().replace("> 0.01", "> 0.99"))
    shutil.copy(Path(__file__).with_name("steerwarm-alerts.test.yml"), broken / "t.yml")
    (broken / "t.yml").write_text((broken / "t.yml").read_text().replace("../../server/deploy/", ""))
    res = subprocess.run([promtool, "test", "rules", "t.yml"], capture_output=True, text=True, cwd=broken, timeout=60)
    assert res.returncode != 0 and "SteerwarmRejectingRequests" in res.stdout + res.stderr


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:  # the issue asks for it where available: not a set-up requirement, so never a CI failure
        pytest.skip("systemd-analyze not found (Debian package systemd): the unit is not verified here")
    return found


def installed_unit(tmp: Path, text: str) -> Path:
    """The unit as it would be installed, with this environment's venv in place of /opt/steerwarm/.venv (verify
    checks that ExecStart's program exists)."""
    assert (Path(sys.prefix) / "bin" / "steerwarm").exists()
    path = tmp / UNIT.name
    path.write_text(text.replace("/opt/steerwarm/.venv", sys.prefix))
    return path


def test_the_systemd_unit_verifies_with_no_warning_and_low_exposure(tmp_path: Path) -> None:
    tool = systemd_analyze()
    control = tmp_path / "control" / "control.service"
    control.parent.mkdir()
    control.write_text("[Service]\nExecStart=/bin/true\n")
    res = subprocess.run([tool, "verify", "--man=no", str(control)], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        pytest.skip(f"systemd-analyze cannot verify units in this environment: {res.stderr.strip()[:300]}")
    unit = installed_unit(tmp_path, UNIT.read_text())
    res = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and UNIT.name not in res.stdout + res.stderr, res.stdout + res.stderr
    # verify only warns (exit 0) on a bad value or unknown key, which is why the output must be clean
    (tmp_path / "typo").mkdir()
    typo = installed_unit(tmp_path / "typo", UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=strickt"))
    res = subprocess.run([tool, "verify", "--man=no", str(typo)], capture_output=True, text=True, timeout=60)
    assert "ProtectSystem" in res.stderr or "protect system" in res.stderr, res.stderr
    res = subprocess.run([tool, "security", "--offline=yes", "--no-pager", str(unit)], capture_output=True,
                         text=True, timeout=60)
    level = re.search(r"Overall exposure level for \S+: ([\d.]+)", res.stdout)
    assert level is not None and float(level.group(1)) <= 2.0, res.stdout[-2000:]


def serve_options() -> dict[str, set[str]]:
    """Each `steerwarm serve` parameter's long option names (e.g. fast_kernels: --fast-kernels, --no-fast-kernels)."""
    command = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    return {p.name: {o for o in (*p.opts, *p.secondary_opts) if o.startswith("--")} for p in command.params}


def test_the_launch_script_and_the_unit_use_only_options_serve_has() -> None:
    params = serve_options()
    options = set().union(*params.values())
    script = (REPO / "server" / "serve.example.sh").read_text()
    used = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", script))
    assert used <= options, used - options
    # "every option spelled out": all of them, the key through its environment variable
    assert [name for name, opts in params.items() if not opts & used] == ["api_key"]
    assert "STEERWARM_API_KEY" in script
    assert subprocess.run(["bash", "-n", str(REPO / "server" / "serve.example.sh")]).returncode == 0
    exec_start = re.search(r"^ExecStart=(.*?)(?<!\\)$", UNIT.read_text(), flags=re.M | re.S)
    assert exec_start is not None and " serve " in exec_start.group(1)
    unit_used = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", exec_start.group(1)))
    assert unit_used and unit_used <= options, unit_used - options
