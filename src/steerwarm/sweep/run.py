"""A sweep: the conditioned error benchmark at every value of the warmth dial, plus reference targets (the warm and
cold fine-tunes, the base model), with a warmth meter reading per point.

Layout of SWEEP_DIR:
- `sweep.json`: `config` (every option given, the result-defining ones checked on a rerun), `points` (one per dial
  value and reference: label, kind, warmth, raw coefficients, target spec, run folder) and `sessions`.
- `runs/<slug>/`: one ordinary bench run folder per point (`warmth+0.25`, `warmth-1.50`, `ref-finetune-warm`),
  written by `runner.run_benchmark`, so `steerwarm bench compare/report` work on any of them.
- `meter.jsonl`: one line per point: p_warm and the base model's NLL of the point's greedy answers to the first
  `meter_prompts` validation prompts (mean and bootstrap SE); `meter-answers.jsonl` caches those answers.

Invariants:
- One model load for all dial points: every dial point of a local sweep is a `LocalTarget` on the same
  `LoadedModel`, steered by the dial at its value (warmth 0 steers nothing, so it reproduces the base model bit for
  bit). References are loaded
  one at a time after the dial points and freed after use. A point whose results (and meter line) are complete is
  skipped without loading anything.
- Dial units: values are warmth in calibrated dial units (`vectors/warm.safetensors` + `cold.safetensors`, or one
  calibrated `--vector`, signed). A single uncalibrated `--vector` makes the values RAW coefficients (x the layer's
  typical norm): it is given an identity calibration and `config.units` says "raw". 0 is always a point (the base
  anchor). `--layers` replaces the vectors' steered layers (their calibration was measured at the original layers,
  so the units are then nominal; `config.layers` records it).
- Paired prompts: every point scores the same prompt grid (same items, contexts, templates, seed, and the same
  `per_item` subsample), so points compare prompt by prompt. The subsample (`runner.per_item_subsample`) keeps K
  prompts per item by a seeded round-robin over the item's conditions (each condition's prompts ranked by a hash of
  (seed, prompt id)); it depends only on the seed and the prompt ids, never on the target, and a larger K keeps
  every prompt of a smaller one.
- Each point's run folder records its target's description (model fingerprint, dtype, vectors, coefficients) and
  refuses to resume under another; sweep.json refuses a rerun whose result-defining settings differ (naming the
  field): model, dtype, mode, tasks, items and contexts (by content hash), seed, limit, per_item, templates,
  conditions, generation settings, units, vectors (content ids, layers, calibrations), layers, meter_prompts,
  meter_tokens and endpoint (what is served, below). Dial values and references may be added by a rerun (`points`
  lists every point the folder has); batch size and threads do not change results' definitions.
- Endpoint sweeps (`endpoint` set, `--endpoint http://HOST:PORT/v1#MODEL`): every dial point is that endpoint with
  `{"warmth": W}` in the body of every request (an `EndpointSpec` with the point's warmth: the same path as a
  `#MODEL@warmth=W` target), an `EndpointDialTarget`; nothing steers locally. The dial is calibrated server-side,
  so `config.units` is "dial (endpoint)", `vectors`/`layers` are None, points carry no coefficients, and
  `--vector/--vectors/--layers` (or an `extra_body` setting "warmth") are refused. The local `model` still
  renders chat prompts for likelihood scoring (its tokenizer and template must be the served model's) and is the
  meter model: the meter scores the endpoint's greedy (temperature 0) answers at the point's warmth.
- What defines an endpoint sweep's results is WHAT is served, not WHERE: `config.endpoint` records the URL, the
  served model name, the served model's fingerprint (from its /v1/models card when the server publishes one, as
  `steerwarm serve` does; None otherwise) and the extra body; a rerun is refused when the model name, the
  fingerprint or the extra body differ, but not when only the URL does (a fleet's host and port change across
  restarts and nodes while the model behind them does not). For the same reason an endpoint dial point's
  `describe()` (the run folder's lock and the meter's answer key) names the model, fingerprint, warmth and extra
  body but not the URL. An endpoint that publishes no fingerprint is trusted by name.
- Resume: each run folder appends per batch and skips what it holds; meter.jsonl skips labels it has, and the
  answer cache skips answers it has; a killed sweep rerun with the same command ends as an uninterrupted one would.
- Forked dial points (`fork`, on by default; `fork=False` is the point-by-point path kept for comparison): in
  likelihood mode, the local dial points that still need prompts run together (`run_forked`, `sweep.fork`): each
  point's own `run_benchmark` runs in a worker thread (same records, record order, run.json lock, resume and
  summary as a separate run; the same target description, so a folder may resume under either path), and each
  batch is scored ONCE for every point that still needs it by `likelihood.score_pairs_forked` (the layers below
  a point's first steered layer run once for all points not yet steered; from it on, one stacked copy per point).
  Scores equal a separate run's up to float rounding (tests/sweep/test_fork_sweep.py: within 1e-5, identical
  verdicts, also across a kill and resume). Generate mode, endpoint sweeps and references run point by point as
  before; the meter runs per point after the forked benchmark. A forked point's run.json session time is the wall
  time of the forked run, which all forked points share (their sum over points overcounts; sweep.json's session
  time does not), and each sweep.json session lists the points it forked (`forked`, in point order).
"""

from __future__ import annotations

import copy
import gc
import json
import math
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steerwarm import __version__
from steerwarm.bench import TASKS
from steerwarm.bench.prompts import TEMPLATES
from steerwarm.bench.runner import MODES, RunConfig, RunResult, build_run_grid, run_benchmark
from steerwarm.bench.store import RunStore
from steerwarm.bench.summary import build_summary
from steerwarm.model.device import DTYPES
from steerwarm.model.load import DEFAULT_MODEL
from steerwarm.paths import display, shipped_vectors
from steerwarm.records import SettingsLock, append_records
from steerwarm.sweep.folder import METER_ANSWERS, METER_JSONL, RUNS, SWEEP_JSON, meter_rows
from steerwarm.sweep.fork import Key, Lockstep, run_lockstep
from steerwarm.targets.endpoint import EndpointClient, EndpointSpec
from steerwarm.targets.registry import EndpointTarget, GenSettings, LocalTarget, Target

if TYPE_CHECKING:
    from steerwarm.bench.prompts import Prompt
    from steerwarm.corpus.validation import ValidationPrompt
    from steerwarm.meter.measure import Meter
    from steerwarm.model.load import LoadedModel
    from steerwarm.steer.dial import Dial
    from steerwarm.steer.vector import SteeringVector
    from steerwarm.targets.likelihood import PairScore

SWEEP_RESULT_KEYS = ("model", "dtype", "mode", "tasks", "items", "contexts", "seed", "limit", "per_item",
                     "templates", "conditions", "generation", "units", "vectors", "layers", "meter_prompts",
                     "meter_tokens", "endpoint")
ENDPOINT_UNITS = "dial (endpoint)"


# -- dial values ------------------------------------------------------------------------------------------------------
def _number(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--warmth {spec!r}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"--warmth {spec!r}: {text.strip()!r} is not a finite number")
    return value


def parse_warmths(spec: str) -> list[float]:
    """Dial values from `START:STOP:STEP` (STOP included when it lands on the grid) or a comma list; sorted, unique,
    0 added when absent (the base anchor). Values are rounded to 1e-9, so -1.5:1.5:0.1 has no float drift."""
    text = spec.strip()
    if not text:
        raise ValueError("--warmth is empty; give START:STOP:STEP (e.g. -1.5:1.5:0.25) or a list (e.g. 0,0.5,1)")
    values: list[float] = []
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise ValueError(f"--warmth {spec!r}: a range is START:STOP:STEP (e.g. -1.5:1.5:0.25)")
        start, stop, step = (_number(p, spec) for p in parts)
        if step <= 0:
            raise ValueError(f"--warmth {spec!r}: STEP must be positive")
        if stop < start:
            raise ValueError(f"--warmth {spec!r}: STOP must not be below START")
        n = math.floor((stop - start) / step + 1e-9)
        if n > 10_000:
            raise ValueError(f"--warmth {spec!r}: {n + 1} values is too many")
        values = [start + i * step for i in range(n + 1)]
    else:
        values = [_number(p, spec) for p in text.split(",") if p.strip()]
        if not values:
            raise ValueError(f"--warmth {spec!r}: no values")
    return _normalise(values)


def _normalise(values: Sequence[float]) -> list[float]:
    out = {round(float(v), 9) + 0.0 for v in values}  # + 0.0 turns -0.0 into 0.0
    out.add(0.0)
    return sorted(out)


def format_warmth(w: float) -> str:
    """Signed, at least two decimals, as many as the value needs: +0.25, -1.50, +0.125."""
    for digits in range(2, 10):
        text = f"{w:+.{digits}f}"
        if abs(float(text) - w) < 1e-12:
            return text
    return f"{w:+g}"


def dial_label(w: float) -> str:
    return f"warmth={format_warmth(w)}"


def dial_slug(w: float) -> str:
    return f"warmth{format_warmth(w)}"


def reference_slug(spec: str) -> str:
    """`finetune=warm` -> `ref-finetune-warm`; a model folder -> `ref-<folder name>`; `prompt=/a/b/kind.txt` ->
    `ref-prompt-kind.txt` (the key kept, the path cut to its name); other characters become '-'."""
    name = spec.strip()
    if "://" not in name and ("/" in name or name.startswith("~")):
        key, sep, path = name.partition("=") if name.startswith("prompt=") else ("", "", name)
        name = key + sep + (Path(path).expanduser().name or path)
    return "ref-" + (re.sub(r"[^A-Za-z0-9.+]+", "-", name).strip("-") or "target")


# -- configuration ----------------------------------------------------------------------------------------------------
@dataclass
class SweepConfig:
    """Everything a sweep needs; see the module doc for what is result-defining."""

    warmths: Sequence[float]
    out: Path
    tasks: Sequence[str] = TASKS
    mode: str = "likelihood"
    items: dict[str, Path] = field(default_factory=dict)
    contexts: Path | None = None
    limit: int | None = None
    per_item: int | None = None
    seed: int = 0
    templates: Sequence[str] = TEMPLATES
    conditions: Sequence[str] | None = None
    model: str = DEFAULT_MODEL
    dtype: str = "float32"
    device: str | None = None  # where it runs: not a result setting (a sweep may resume elsewhere, same dtype)
    chat_template: Path | None = None
    vector: Path | None = None
    vectors: Path | None = None
    layers: Sequence[int] | None = None
    references: Sequence[str] = ()
    batch_size: int = 16
    gen: GenSettings = field(default_factory=GenSettings)
    meter_prompts: int = 24
    meter_tokens: int = 64
    endpoint: str | None = None  # http://HOST:PORT/v1#MODEL: the dial points are served there (see the module doc)
    api_key_env: str = "OPENAI_API_KEY"
    extra_body: dict[str, Any] | None = None
    concurrency: int = 4
    retries: int = 5
    fork: bool = True  # likelihood mode, local dial: score each batch once for all dial points (module doc)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks:
            raise ValueError(f"unknown task(s) {', '.join(bad) or '(none)'}; choose from {', '.join(TASKS)}")
        if self.vector is not None and self.vectors is not None:
            raise ValueError("give either --vector (one vector file) or --vectors (a calibrated dial folder)")
        if self.meter_prompts < 0 or self.meter_tokens < 1:
            raise ValueError("meter prompts must be >= 0 and meter tokens >= 1")
        if self.per_item is not None and self.per_item < 1:
            raise ValueError(f"per-item must be at least 1, got {self.per_item}")
        if self.layers is not None and not self.layers:
            raise ValueError("--layers is empty")
        if self.endpoint is not None:
            spec = EndpointSpec.parse(self.endpoint)
            if spec.warmth is not None:
                raise ValueError(f"--endpoint {self.endpoint!r}: give it without '@warmth=W'; the sweep sends each "
                                 "point's warmth (--warmth) in the request body")
            given = [o for o, v in (("--vector", self.vector), ("--vectors", self.vectors),
                                    ("--layers", self.layers)) if v is not None]
            if given:
                raise ValueError(f"{', '.join(given)} cannot be combined with --endpoint: the endpoint steers with "
                                 "its own calibrated dial; drop them (or drop --endpoint to steer locally)")
            if "warmth" in (self.extra_body or {}):
                raise ValueError("--extra-body sets \"warmth\", which --endpoint sends itself for every point "
                                 "(--warmth); remove it from --extra-body")
        refs = [r.strip() for r in self.references]
        if len(set(refs)) != len(refs) or any(not r for r in refs):
            raise ValueError(f"references must be distinct and non-empty: {refs}")
        self.references = refs
        self.warmths = _normalise(self.warmths)

    def run_config(self, run_dir: Path) -> RunConfig:
        return RunConfig(tasks=list(self.tasks), out=run_dir, mode=self.mode, items=dict(self.items),
                         contexts=self.contexts, limit=self.limit, seed=self.seed, templates=list(self.templates),
                         conditions=list(self.conditions) if self.conditions is not None else None,
                         batch_size=self.batch_size, gen=self.gen, per_item=self.per_item,
                         yardstick_every=0)  # no bare-forward timing passes: a sweep is for results, not speed


@dataclass(frozen=True)
class SweepPoint:
    label: str
    kind: str  # "dial" or "reference"
    warmth: float | None
    warm_coef: float | None
    cold_coef: float | None
    spec: str
    run: str  # run folder relative to the sweep folder

    def record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PointResult:
    point: SweepPoint
    total: int
    done_before: int
    scored_now: int
    seconds: float
    error_rate: float | None
    n_scored: int
    skipped: bool
    meter: dict[str, Any] | None = None


@dataclass
class SweepResult:
    out: Path
    points: list[PointResult]
    prompts_per_point: int
    scored_now: int
    seconds: float
    config: dict[str, Any]


# -- vectors and the dial ---------------------------------------------------------------------------------------------
def _with_layers(vec: SteeringVector, layers: Sequence[int] | None) -> SteeringVector:
    if layers is None:
        return vec
    missing = [layer for layer in layers if layer not in vec.directions]
    if missing:
        raise ValueError(f"--layers {list(layers)}: vector {vec.name!r} has no direction at layer(s) {missing} "
                         f"(it has {sorted(vec.directions)})")
    out = copy.copy(vec)
    out.layers = list(layers)
    return out


def build_dial(cfg: SweepConfig) -> tuple[Dial, str, dict[str, Any]]:
    """(dial, units "dial" or "raw", a description of the vectors for sweep.json)."""
    from steerwarm.steer.answers import vector_id
    from steerwarm.steer.dial import Dial
    from steerwarm.steer.vector import Calibration, SteeringVector

    if cfg.vector is not None:
        vec = _with_layers(SteeringVector.load(cfg.vector), cfg.layers)
        units = "dial" if vec.calibration is not None else "raw"
        if units == "raw":
            vec = copy.copy(vec)
            vec.calibration = Calibration(dial=[0.0, 1.0], coef=[0.0, 1.0],
                                          note="identity: the sweep's values are raw coefficients")
        dial, source = Dial(warm=vec), {"file": display(cfg.vector)}
    else:
        vdir = cfg.vectors or shipped_vectors()
        base = Dial.from_dir(vdir)
        cold = _with_layers(base.cold, cfg.layers) if base.cold is not None else None
        dial, units, source = Dial(_with_layers(base.warm, cfg.layers), cold), "dial", {"dir": display(vdir)}

    def info(v: SteeringVector | None) -> dict[str, Any] | None:
        if v is None:
            return None
        cal = v.calibration
        return {"name": v.name, "id": vector_id(v), "model_fingerprint": v.model_fingerprint, "layers": list(v.layers),
                "calibration": {"dial": cal.dial, "coef": cal.coef} if cal is not None else None}

    return dial, units, {**source, "warm": info(dial.warm), "cold": info(dial.cold)}


class DialPointTarget(LocalTarget):
    """A dial point: the shared base model steered at one warmth; describes the vectors by content as well."""

    def __init__(self, spec: str, loaded: LoadedModel, dial: Dial, warmth: float, vectors: dict[str, Any],
                 units: str) -> None:
        super().__init__(spec, loaded, "steered", dial=dial, warmth=warmth,
                         vectors_dir=Path(vectors.get("dir") or vectors.get("file") or ""))
        self.vectors_info = vectors
        self.units = units

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        warm, cold = self.vectors_info["warm"], self.vectors_info["cold"]
        out.update(units=self.units, warm_vector_id=warm["id"], cold_vector_id=cold["id"] if cold else None,
                   cold_layers=cold["layers"] if cold else None)
        return out


class ForkedDialTarget(DialPointTarget):
    """A dial point of a forked sweep: the same target (and description) as `DialPointTarget`, whose batches are
    scored by the sweep's `Lockstep` together with the other dial points' (`sweep.fork`)."""

    def __init__(self, spec: str, loaded: LoadedModel, dial: Dial, warmth: float, vectors: dict[str, Any],
                 units: str, lockstep: Lockstep[PairScore]) -> None:
        super().__init__(spec, loaded, dial, warmth, vectors, units)
        self.lockstep = lockstep

    def score(self, users: Sequence[str], pairs: Sequence[tuple[str, str]]) -> list[PairScore]:
        return self.lockstep.ask(self.spec, list(zip(users, pairs, strict=True)))


def run_forked(cfg: SweepConfig, points: Sequence[SweepPoint], loaded: LoadedModel, dial: Dial,
               vectors: dict[str, Any], units: str, grid: Sequence[Prompt], held: Mapping[str, set[str]],
               on_progress: Callable[[int], None] | None = None) -> dict[str, RunResult]:
    """The benchmark of local dial `points` in likelihood mode, each batch scored once for all of them
    (`sweep.fork`); `held` is the prompt ids each point's run folder already has. Each point's RunResult, from its
    own `run_benchmark`."""
    from steerwarm.bench.replies import replies
    from steerwarm.targets.likelihood import score_pairs_forked

    if cfg.mode != "likelihood":
        raise ValueError("forked dial points score likelihood mode only; generate mode runs point by point")
    keys = {p.prompt_id: (p.text, replies(p.item)) for p in grid}
    pending = {pt.label: {k for i, k in keys.items() if i not in held[pt.label]} for pt in points}
    warmth = {pt.label: pt.warmth for pt in points}
    memos: dict[tuple[str, ...], dict[tuple[int, ...], Any]] = {}

    def score(batch: Sequence[Key], labels: Sequence[str]) -> dict[str, list[PairScore]]:
        ws = [float(warmth[label] or 0.0) for label in labels]
        if tuple(labels) not in memos:  # a prefix memo serves one set of streams: keep the current set's only
            memos.clear()
        memo = memos.setdefault(tuple(labels), {})
        out = score_pairs_forked(loaded, [k[0] for k in batch], [k[1] for k in batch], len(ws),
                                 lambda streams: dial.specs([ws[s] for s in streams]), memo)
        return dict(zip(labels, out, strict=True))

    lockstep: Lockstep[PairScore] = Lockstep(pending, score)

    def job(pt: SweepPoint) -> Callable[[], RunResult]:
        assert pt.warmth is not None
        target = ForkedDialTarget(pt.spec, loaded, dial, pt.warmth, vectors, units, lockstep)
        return lambda: run_benchmark(cfg.run_config(cfg.out / pt.run), target, progress=False,
                                     on_progress=on_progress)

    return run_lockstep({pt.label: job(pt) for pt in points}, lockstep)


class EndpointDialTarget(EndpointTarget):
    """A dial point served by an endpoint at one warmth (sent in the body). Describes what is served (model name,
    fingerprint, warmth, extra body), not where (see the module doc)."""

    def __init__(self, spec: str, client: EndpointClient, tokenizer: str, endpoint: dict[str, Any],
                 tok: LoadedModel | None = None) -> None:
        super().__init__(spec, client, tokenizer, tok=tok)
        self.endpoint = endpoint

    def describe(self) -> dict[str, Any]:
        served = self.client.describe()
        return {"spec": self.spec, "kind": "endpoint-dial", "units": ENDPOINT_UNITS, "warmth": served["warmth"],
                "model": served["model"], "fingerprint": self.endpoint.get("fingerprint"),
                "extra_body": served["extra_body"], "tokenizer": self.tokenizer_name}


def endpoint_record(cfg: SweepConfig) -> dict[str, Any] | None:
    """`config.endpoint`: the URL, the served model name (the first listed when the spec names none), its
    fingerprint when the model card publishes one (`steerwarm serve` does) and the extra body; None locally."""
    if cfg.endpoint is None:
        return None
    client = _endpoint_client(cfg, None)
    model = client.model
    listed = client.call(lambda: client.client.models.list())
    card = next((m for m in listed.data if m.id == model), None)
    extras = (card.model_extra or {}).get("steerwarm") if card is not None else None
    fingerprint = extras.get("fingerprint") if isinstance(extras, dict) else None
    return {"url": client.spec.base_url, "model": model, "fingerprint": fingerprint,
            "extra_body": dict(cfg.extra_body or {})}


def _endpoint_client(cfg: SweepConfig, warmth: float | None, model: str | None = None) -> EndpointClient:
    assert cfg.endpoint is not None
    spec = EndpointSpec.parse(cfg.endpoint)
    spec = EndpointSpec(spec.base_url, model or spec.model, warmth)
    return EndpointClient(spec, api_key_env=cfg.api_key_env, extra_body=cfg.extra_body,
                          concurrency=cfg.concurrency, retries=cfg.retries)


# -- sweep.json -------------------------------------------------------------------------------------------------------
def _comparable(key: str, value: Any) -> Any:
    """The part of a config field that defines results (file paths may change; contents may not)."""
    if key == "items" and isinstance(value, dict):
        return {t: d.get("sha256") for t, d in sorted(value.items())}
    if key == "contexts" and isinstance(value, dict):
        return value.get("sha256")
    if key == "vectors" and isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in ("dir", "file")}
    if key == "endpoint" and isinstance(value, dict):
        return {k: v for k, v in value.items() if k != "url"}  # what is served, not where (module doc)
    return value


def sweep_lock(path: Path) -> SettingsLock:
    """sweep.json's settings lock: the result-defining fields (`SWEEP_RESULT_KEYS`), compared by content."""
    return SettingsLock(path, keys=SWEEP_RESULT_KEYS, comparable=_comparable, what="sweep folder",
                        hint="rerun with the same settings or use a new --out folder")


def _points(warmths: Sequence[float], references: Sequence[str], dial: Dial | None) -> list[SweepPoint]:
    """The sweep's points; with no local dial (an endpoint sweep) dial points carry no coefficients."""
    pts = []
    for w in sorted(warmths):
        warm_coef, cold_coef = dial.coefficients(w) if dial is not None else (None, None)
        pts.append(SweepPoint(dial_label(w), "dial", w, warm_coef,
                              cold_coef if dial is not None and dial.cold is not None else None,
                              dial_label(w), f"{RUNS}/{dial_slug(w)}"))
    used: set[str] = set()
    for spec in references:
        slug = base = reference_slug(spec)
        i = 2
        while slug in used:
            slug, i = f"{base}-{i}", i + 1
        used.add(slug)
        pts.append(SweepPoint(spec, "reference", None, None, None, spec, f"{RUNS}/{slug}"))
    return pts


# -- the meter --------------------------------------------------------------------------------------------------------
def meter_point(target: Target, point: SweepPoint, prompts: Sequence[ValidationPrompt], meter: Meter,
                answers_path: Path, *, max_tokens: int = 64, batch_size: int = 8) -> dict[str, Any]:
    """Greedy answers of `target` (steered at the point, or the reference model itself) to `prompts`, through the
    answer cache, scored by `meter`: the meter.jsonl row of the point."""
    from steerwarm.steer.answers import AnswerLog, answer_key

    t0 = time.perf_counter()
    log = AnswerLog(answers_path)
    key = answer_key(target=target.describe(), max_new_tokens=max_tokens)
    settings = GenSettings(max_tokens=max_tokens, temperature=0.0, top_p=1.0)
    answers = log.answers(key, prompts, lambda users: target.generate(users, settings, seed=0),
                          batch_size=batch_size, progress=False, desc=f"meter {point.label}")
    m = meter.measure(point.label, point.warm_coef, prompts, answers)
    return {"label": point.label, "kind": point.kind, "warmth": point.warmth, "p_warm": m.p_warm.mean,
            "p_warm_se": m.p_warm.se, "nll": m.nll.mean, "nll_se": m.nll.se, "n": m.p_warm.n,
            "warm_coef": point.warm_coef, "cold_coef": point.cold_coef, "spec": point.spec,
            "max_tokens": max_tokens, "seconds": time.perf_counter() - t0}


# -- the sweep --------------------------------------------------------------------------------------------------------
def _error_rate(summary: dict[str, Any]) -> tuple[float | None, int]:
    run = summary.get("run", {})
    n = int(run.get("n_scored", 0) or 0)
    rate = run.get("error_rate")
    return (float(rate) if n and rate is not None else None), n


def sweep_config_record(cfg: SweepConfig, units: str, vectors: dict[str, Any] | None, itemsets: Sequence[Any],
                        contexts: Any, endpoint: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "model": cfg.model, "dtype": cfg.dtype, "mode": cfg.mode, "tasks": list(cfg.tasks),
        "items": {s.task: s.describe() for s in itemsets}, "contexts": contexts.describe(), "seed": cfg.seed,
        "limit": cfg.limit, "per_item": cfg.per_item, "templates": list(cfg.templates),
        "conditions": list(cfg.conditions) if cfg.conditions is not None else None,
        "generation": cfg.gen.record() if cfg.mode == "generate" else None,
        "units": units, "vectors": vectors, "layers": list(cfg.layers) if cfg.layers is not None else None,
        "meter_prompts": cfg.meter_prompts, "meter_tokens": cfg.meter_tokens if cfg.meter_prompts else None,
        "endpoint": endpoint, "warmths": list(cfg.warmths), "references": list(cfg.references),
        "batch_size": cfg.batch_size, "steerwarm": __version__,
    }


def run_sweep(cfg: SweepConfig, *, progress: bool = True,
              meter: Meter | Callable[[LoadedModel], Meter] | None = None) -> SweepResult:
    """Run (or resume) the sweep `cfg` describes; see the module doc. `meter` replaces the default warmth meter
    (`calibrate.Meter.default(base model)`): a Meter, or a function of the loaded base model returning one."""
    from tqdm import tqdm

    from steerwarm.meter.measure import Meter
    from steerwarm.steer.dial import check_warmth
    from steerwarm.targets.registry import parse_target, tokenizer_only

    dial: Dial | None = None
    vectors: dict[str, Any] | None = None
    if cfg.endpoint is None:
        dial, units, vectors = build_dial(cfg)
        for w in cfg.warmths:
            dial.coefficients(w)  # the dial's range check, before anything is loaded
    else:
        units = ENDPOINT_UNITS
        for w in cfg.warmths:
            check_warmth(w)  # the range every steerwarm dial serves, checked before any request
    for spec in cfg.references:
        _check_reference(spec)
    out = cfg.out
    itemsets, contexts, grid = build_run_grid(cfg.run_config(out))
    if not grid:
        raise ValueError("the sweep's prompt grid is empty (check --tasks, --items, --limit)")
    ids = {p.prompt_id for p in grid}
    endpoint = endpoint_record(cfg)
    config = sweep_config_record(cfg, units, vectors, itemsets, contexts, endpoint)
    sweep_path = out / SWEEP_JSON
    lock = sweep_lock(sweep_path)
    old = lock.check(config)
    sessions: list[dict[str, Any]] = []
    warmths, references = list(cfg.warmths), list(cfg.references)
    if old is not None:
        sessions = list(old.get("sessions", []))
        warmths = _normalise([*old["config"].get("warmths", []), *warmths])
        references = [*old["config"].get("references", []),
                      *(r for r in references if r not in old["config"].get("references", []))]
        config.update(warmths=warmths, references=references)
    every = _points(warmths, references, dial)
    wanted = {dial_label(w) for w in cfg.warmths} | set(cfg.references)
    todo = [p for p in every if p.label in wanted]

    def write_sweep() -> None:
        lock.write({"config": config, "points": [p.record() for p in every], "sessions": sessions})

    write_sweep()

    held = {p.label: set(RunStore(out / p.run).load()) & ids for p in todo}
    done = {label: len(h) for label, h in held.items()}
    metered = meter_rows(out) if cfg.meter_prompts else {}
    mprompts: list[ValidationPrompt] = []
    if cfg.meter_prompts:
        from steerwarm.corpus.validation import validation_prompts

        mprompts = validation_prompts(cfg.meter_prompts)

    state: dict[str, Any] = {}

    def base_model() -> LoadedModel:
        if "base" not in state:
            from steerwarm.model.load import load

            loaded = load(cfg.model, cfg.dtype, cfg.device, cfg.chat_template)
            for vec in (dial.warm, dial.cold) if dial is not None else ():
                if vec is not None:
                    vec.check_model(loaded.fingerprint)
            state["base"] = loaded
        base: LoadedModel = state["base"]
        return base

    def the_meter() -> Meter:
        if "meter" not in state:
            state["meter"] = (meter if isinstance(meter, Meter) else meter(base_model()) if meter is not None
                              else Meter.default(base_model()))
        m: Meter = state["meter"]
        return m

    started, t_start = time.strftime("%Y-%m-%dT%H:%M:%S"), time.perf_counter()
    results: list[PointResult] = []
    scored = meter_added = 0
    bar = tqdm(total=len(grid) * len(todo), initial=sum(done.values()), disable=not progress, unit="prompt",
               desc="sweep", dynamic_ncols=True)
    bar_lock = threading.Lock()

    def advance(n: int) -> None:  # forked points' workers call it from their threads
        with bar_lock:
            bar.update(n)

    forked: dict[str, RunResult] = {}
    try:
        forkable = [p for p in todo if p.kind == "dial" and done[p.label] < len(grid)]
        if cfg.fork and cfg.mode == "likelihood" and endpoint is None and len(forkable) > 1:
            assert dial is not None and vectors is not None
            bar.set_postfix_str(f"{len(forkable)} dial points forked")
            forked = run_forked(cfg, forkable, base_model(), dial, vectors, units, grid, held, advance)
        for point in todo:
            run_dir = out / point.run
            complete = done[point.label] == len(grid)
            need_meter = bool(cfg.meter_prompts) and point.label not in metered
            t0 = time.perf_counter()
            if complete and not need_meter:
                store = RunStore(run_dir)
                if store.summary.is_file():
                    summary = json.loads(store.summary.read_text())
                else:
                    summary = build_summary(store)
                    store.write_summary(summary)
                rate, n = _error_rate(summary)
                results.append(PointResult(point, len(grid), len(grid), 0, 0.0, rate, n, True,
                                           metered.get(point.label)))
                continue
            bar.set_postfix_str(point.label)
            target: Target
            if point.kind == "dial" and endpoint is not None:
                assert point.warmth is not None
                if "tok" not in state:
                    state["tok"] = tokenizer_only(cfg.model)
                target = EndpointDialTarget(point.spec, _endpoint_client(cfg, point.warmth, endpoint["model"]),
                                            cfg.model, endpoint, tok=state["tok"])
            elif point.kind == "dial":
                assert point.warmth is not None and dial is not None and vectors is not None
                target = DialPointTarget(point.spec, base_model(), dial, point.warmth, vectors, units)
            else:
                target = parse_target(point.spec, model=cfg.model, dtype=cfg.dtype, device=cfg.device,
                                      chat_template=cfg.chat_template, vectors_dir=cfg.vectors,
                                      api_key_env=cfg.api_key_env, extra_body=cfg.extra_body,
                                      concurrency=cfg.concurrency, retries=cfg.retries)
            res: RunResult = (forked[point.label] if point.label in forked else
                              run_benchmark(cfg.run_config(run_dir), target, progress=False, on_progress=advance))
            scored += res.scored_now
            row = metered.get(point.label)
            if need_meter:
                bar.set_postfix_str(f"{point.label} meter")
                row = meter_point(target, point, mprompts, the_meter(), out / METER_ANSWERS,
                                  max_tokens=cfg.meter_tokens, batch_size=cfg.batch_size)
                append_records(out / METER_JSONL, [row])
                metered[point.label] = row
                meter_added += 1
            rate, n = _error_rate(res.summary)
            # a forked point's benchmark time is the forked run's wall time, shared with the other forked points
            seconds = time.perf_counter() - t0 + (res.seconds if point.label in forked else 0.0)
            pr = PointResult(point, res.total, res.done_before, res.scored_now, seconds, rate, n, False, row)
            results.append(pr)
            if progress:
                bar.write(point_line(pr))
            del target
            if point.kind == "reference":
                gc.collect()
    finally:
        bar.close()
        seconds = time.perf_counter() - t_start
        if scored or meter_added:
            sessions.append({"started": started, "seconds": seconds, "prompts": scored, "meter_points": meter_added,
                             "forked": [p.label for p in todo if p.label in forked]})
            write_sweep()
    return SweepResult(out, results, len(grid), scored, seconds, config)


def point_line(r: PointResult) -> str:
    """One line about a finished point: label, prompts, seconds, error rate (and p_warm when metered)."""
    rate = f"{100 * r.error_rate:.1f}%" if r.error_rate is not None else "n/a"
    text = (f"{r.point.label}: {r.total} prompts ({r.scored_now} scored now) in {r.seconds:.1f}s, "
            f"error rate {rate} (n={r.n_scored})")
    if r.meter:
        text += f", p_warm {r.meter['p_warm']:.3f}, NLL {r.meter['nll']:.3f}"
    return text


def _check_reference(spec: str) -> None:
    """Reject a reference no target parser would accept, before hours of dial points run (the registry's rule)."""
    from steerwarm.targets.registry import check_target_spec

    check_target_spec(spec, "--reference")
