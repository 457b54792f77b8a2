"""GPU check: what per-row steering costs on a model with the shapes of Llama-3.1-8B, with no downloaded weights.

Builds a random-initialised Llama with Llama-3.1-8B's shapes (hidden 4096, 32 layers, 32 heads / 8 KV heads,
intermediate 14336, vocab 128256, llama3 RoPE) straight on one GPU in bfloat16, a word-level tokenizer over "t0"..
"t{V-1}" in memory, and a random steering vector, then measures in one run and prints one table:
  decode tokens/s steered / unsteered at batch 1, 32 and 128 (target >= 0.97),
  mixed warmth (a different coefficient per row) / uniform warmth at the largest batch (target >= 0.95),
  the serving engine's aggregate tokens/s and time to first token at 64 concurrent requests (mixed warmth through
  the calibrated dial, next to warmth 0 on the same engine; reported, no target),
  greedy equality of per-row steering: row i of a mixed batch equals row i of a batch where every row has row i's
  coefficient (target: every row).
Without CUDA (or with --tiny) it runs the same measurements on a tiny Llama on the CPU in seconds, and says so.

Invariants:
- Nothing is downloaded or read from disk: model, tokenizer and vector are made in code from a fixed seed. The large
  model is constructed under `torch.device(device)` with bfloat16 as the default dtype, so its weights are allocated
  and initialised on the GPU, never on the CPU.
- Every timed configuration generates exactly the same number of tokens per row: the model has no EOS token (the
  tokenizer has none and generation_config.eos_token_id is None), and each output's length is asserted.
- Configurations are interleaved round-robin after one warm-up call each, and a ratio is the median of per-round
  ratios (each round measures both sides back to back, so machine drift hits both alike). CUDA is synchronised
  before each clock read.
- Prompts have one length and no padding, so the steered and unsteered runs of a batch use the same kernels on the
  same shapes; the equality batches have the same shapes too, so a difference there is the steering's own.
- The exit code is 0 whenever the checks ran, including when a target is missed (the table says FAIL), and 2 for bad
  arguments.

Usage: .venv/bin/python scripts/gpu_check.py [--tiny] [--device cuda:0] [--json out.json] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from steerwarm.model.device import DeviceError, resolve_device, resolve_dtype, torch_dtype
from steerwarm.model.load import LoadedModel, fingerprint
from steerwarm.serve.engine import ChoiceDone, Delta, Engine, EngineRequest, Event, SamplingParams
from steerwarm.serve.registry import SteeringRegistry
from steerwarm.steer.dial import Dial
from steerwarm.steer.hooks import SteerSpec, record_residuals, steer
from steerwarm.steer.vector import Calibration, Provenance, SteeringVector

SPECIALS = ("<unk>", "<pad>")
COEF = 0.5  # raw steering strength, in units of the steered layer's typical residual norm
ENGINE_REQUESTS = 64


@dataclass(frozen=True)
class Plan:
    """What one run measures: the model's shape and how many tokens, rows and rounds each measurement uses."""

    name: str
    config: dict[str, Any]
    batches: tuple[int, ...] = (1, 32, 128)
    prompt_len: int = 64
    new_tokens: int = 32
    rounds: int = 5
    equality_rows: int = 16
    engine_tokens: int = 64
    engine_rounds: int = 3


def llama31_8b_shape() -> dict[str, Any]:
    return dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072, rms_norm_eps=1e-5,
                rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                 "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                 "original_max_position_embeddings": 8192},
                tie_word_embeddings=False)


def tiny_shape() -> dict[str, Any]:
    return {**llama31_8b_shape(), "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2}


FULL = Plan("Llama-3.1-8B shapes, random weights", llama31_8b_shape())
TINY = Plan("tiny Llama (hidden 64, 3 layers), random weights", tiny_shape(), prompt_len=16, new_tokens=8, rounds=2,
            equality_rows=8, engine_tokens=8, engine_rounds=1)


# -- building ------------------------------------------------------------------------------------------------------
def make_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """A word-level tokenizer: ids 0 and 1 are <unk> and <pad>, id i >= 2 is the word "t{i}"; no EOS."""
    vocab = {w: i for i, w in enumerate(SPECIALS)}
    vocab.update({f"t{i}": i for i in range(len(SPECIALS), vocab_size)})
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece(prefix="##")
    tok = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>")
    tok.padding_side = "left"
    return tok


def build_model(plan: Plan, device: str, dtype: torch.dtype, seed: int) -> LlamaForCausalLM:
    """The random-weight model, allocated and initialised on `device` in `dtype` (see the module invariants)."""
    cfg = LlamaConfig(**plan.config, pad_token_id=SPECIALS.index("<pad>"), bos_token_id=None, eos_token_id=None)
    torch.manual_seed(seed)
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(before)
    model.eval()  # type: ignore[no-untyped-call]
    model.generation_config.eos_token_id = None
    model.generation_config.bos_token_id = None
    model.generation_config.pad_token_id = cfg.pad_token_id
    return model


def typical_norms(model: LlamaForCausalLM, ids: torch.Tensor, layers: Sequence[int]) -> dict[int, float]:
    """Median residual norm at each layer's output over one prompt, position 0 excluded (it is an outlier)."""
    with torch.inference_mode(), record_residuals(model, layers) as store:
        model(input_ids=ids[:1])
    return {layer: float(store[layer][0][0, 1:].norm(dim=-1).median()) for layer in layers}


def make_vector(loaded: LoadedModel, layers: Sequence[int], norms: dict[int, float], seed: int) -> SteeringVector:
    """A random unit direction per steered layer, calibrated so that warmth 1 is raw coefficient COEF."""
    g = torch.Generator().manual_seed(seed)
    diffs = {layer: torch.randn(loaded.hidden_size, generator=g) for layer in layers}
    vec = SteeringVector.from_differences(diffs, norms, model_fingerprint=loaded.fingerprint, model_name=loaded.name,
                                          provenance=Provenance(method="random (gpu check)"), name="warm",
                                          layers=list(layers))
    vec.calibration = Calibration(dial=[0.0, 1.0], coef=[0.0, COEF], note="gpu check: linear, not measured")
    return vec


# -- measuring -----------------------------------------------------------------------------------------------------
class Clock:
    """perf_counter that first waits for the device's queued work, so a reading covers work actually done."""

    def __init__(self, device: str) -> None:
        self.cuda = torch.device(device) if device.startswith("cuda") else None
        self.start = time.perf_counter()

    def now(self) -> float:
        if self.cuda is not None:
            torch.cuda.synchronize(self.cuda)  # this device's queue, not only the current device's
        return time.perf_counter()

    def say(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.start:7.1f}s] {text}", file=sys.stderr, flush=True)


def greedy(model: LlamaForCausalLM, ids: torch.Tensor, tokens: int,
           coefs: float | list[float] | None, vec: SteeringVector) -> torch.Tensor:
    """Greedy continuation of `ids` by exactly `tokens` tokens, steered by `vec` with `coefs` (None: unsteered)."""
    specs = [SteerSpec(vec, coefs)] if coefs is not None else []
    net: Any = model  # generate carries no type hints
    with torch.inference_mode(), steer(model, specs):
        out = net.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens,
                           do_sample=False)
    new: torch.Tensor = out[:, ids.shape[1]:]
    if new.shape[1] != tokens:
        raise RuntimeError(f"generated {new.shape[1]} tokens, expected {tokens}")
    return new


def spread(rows: int, top: float) -> list[float]:
    """`rows` distinct coefficients evenly spread over [-top, top], none of them 0 (so every row is steered)."""
    if rows == 1:
        return [top]
    points = rows + rows % 2  # an even count of evenly spaced points symmetric about 0 never hits 0
    return [top * (2 * i / (points - 1) - 1) for i in range(rows)]


def interleaved(configs: dict[str, Callable[[], float]], rounds: int, clock: Clock) -> dict[str, list[float]]:
    """One warm-up call per configuration, then `rounds` round-robin rounds; the samples of each."""
    for name, go in configs.items():
        go()
        clock.say(f"warm-up {name}")
    samples: dict[str, list[float]] = {k: [] for k in configs}
    for r in range(rounds):
        for name, go in configs.items():
            samples[name].append(go())
        clock.say(f"round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in samples.items()) + " tok/s")
    return samples


def paired(samples: dict[str, list[float]], a: str, b: str) -> float:
    """Median of the per-round ratios a/b."""
    return statistics.median(x / y for x, y in zip(samples[a], samples[b], strict=True))


@dataclass
class Row:
    check: str
    key: str
    value: float
    unit: str
    target: float | None  # value must be >= target; None: reported only
    detail: str

    @property
    def result(self) -> str:
        if self.target is None:
            return "info"
        return "PASS" if self.value >= self.target else "FAIL"


@dataclass
class Report:
    header: dict[str, str]
    rows: list[Row] = field(default_factory=list)
    wall_s: float = 0.0

    def table(self) -> str:
        def shown(r: Row) -> str:
            if r.unit == "ratio":
                return f"{r.value:.3f}"
            return f"{r.value:g}{r.unit}" if r.unit.startswith("/") else f"{r.value:.1f} {r.unit}"

        head = ("check", "measured", "target", "result", "detail")
        body = [(r.check, shown(r), f">= {r.target:g}" if r.target is not None else "-", r.result, r.detail)
                for r in self.rows]
        widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
        lines = [f"{k}: {v}" for k, v in self.header.items()]
        lines.append("")
        for i, cells in enumerate([head, *body]):
            lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append("")
        lines.append(f"total wall time: {self.wall_s:.1f} s (model build to table; imports not counted)")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {"header": self.header, "rows": [{**asdict(r), "result": r.result} for r in self.rows],
                "wall_s": self.wall_s}


def decode_checks(model: LlamaForCausalLM, prompts: torch.Tensor, vec: SteeringVector, plan: Plan,
                  clock: Clock) -> list[Row]:
    """Steered/unsteered tokens/s per batch size and mixed/uniform coefficients at the largest batch."""
    def config(batch: int, coefs: float | list[float] | None) -> Callable[[], float]:
        ids = prompts[:batch]

        def go() -> float:
            t = clock.now()
            greedy(model, ids, plan.new_tokens, coefs, vec)
            return batch * plan.new_tokens / (clock.now() - t)

        return go

    big = max(plan.batches)
    configs: dict[str, Callable[[], float]] = {}
    for b in plan.batches:
        configs[f"b{b} unsteered"] = config(b, None)
        configs[f"b{b} steered"] = config(b, COEF)
    configs[f"b{big} mixed"] = config(big, spread(big, COEF))
    samples = interleaved(configs, plan.rounds, clock)
    med = {k: statistics.median(v) for k, v in samples.items()}
    rows = [Row(f"decode steered/unsteered, batch {b}", f"decode_b{b}", paired(samples, f"b{b} steered",
                                                                             f"b{b} unsteered"), "ratio", 0.97,
                f"unsteered {med[f'b{b} unsteered']:.1f} tok/s, steered {med[f'b{b} steered']:.1f} tok/s")
            for b in plan.batches]
    rows.append(Row(f"mixed/uniform warmth, batch {big}", "mixed_uniform",
                    paired(samples, f"b{big} mixed", f"b{big} steered"), "ratio", 0.95,
                    f"{big} different coefficients {med[f'b{big} mixed']:.1f} tok/s, "
                    f"one coefficient {med[f'b{big} steered']:.1f} tok/s"))
    return rows


def equality_check(model: LlamaForCausalLM, prompts: torch.Tensor, vec: SteeringVector, plan: Plan,
                   clock: Clock) -> Row:
    """Row i of a batch with per-row coefficients c_0..c_{n-1} vs row i of the same batch all at c_i."""
    n = plan.equality_rows
    ids = prompts[:n]
    coefs = spread(n, COEF)
    mixed = greedy(model, ids, plan.new_tokens, coefs, vec)
    base = greedy(model, ids, plan.new_tokens, None, vec)
    equal = 0
    for i, c in enumerate(coefs):
        uniform = greedy(model, ids, plan.new_tokens, [c] * n, vec)
        equal += int(torch.equal(mixed[i], uniform[i]))
    changed = sum(int(not torch.equal(mixed[i], base[i])) for i in range(n))
    clock.say(f"equality: {equal}/{n} rows equal; steering changed {changed}/{n} rows")
    return Row("greedy equality of per-row steering", "equality", float(equal), f"/{n} rows", float(n),
               f"batch {n}, {plan.new_tokens} tokens, coefficients {coefs[0]:+.2f}..{coefs[-1]:+.2f}; "
               f"steering changed {changed}/{n} rows")


def engine_round(engine: Engine, requests: list[EngineRequest], clock: Clock) -> tuple[float, float]:
    """Submit every request at once and step until idle; (aggregate generated tokens/s, median time to first
    token in seconds)."""
    first: list[float | None] = [None] * len(requests)

    def sink(i: int) -> Callable[[Event], None]:
        def take(event: Event) -> None:
            if first[i] is None and isinstance(event, Delta | ChoiceDone):
                first[i] = time.perf_counter()

        return take

    before = engine.generated_tokens
    t0 = clock.now()
    engine.submit(requests, [sink(i) for i in range(len(requests))])
    engine.run_until_idle()
    wall = clock.now() - t0
    ttft = [f - t0 for f in first if f is not None]
    return (engine.generated_tokens - before) / wall, statistics.median(ttft) if ttft else math.nan


def engine_check(loaded: LoadedModel, prompts: torch.Tensor, vec: SteeringVector, plan: Plan,
                 clock: Clock) -> Row:
    """64 concurrent streamed greedy requests, each at its own warmth on the dial, vs all at warmth 0."""
    registry = SteeringRegistry({"warm": vec}, Dial(vec), dial_note="gpu check", num_layers=loaded.num_layers)
    engine = Engine(loaded, registry, max_batch=ENGINE_REQUESTS, max_queue=ENGINE_REQUESTS)
    params = SamplingParams(max_tokens=plan.engine_tokens, temperature=0.0, logprobs=None)
    warmths = spread(ENGINE_REQUESTS, 1.0)

    def requests(mixed: bool) -> list[EngineRequest]:
        return [EngineRequest(tuple(int(t) for t in prompts[i % len(prompts)].tolist()), params,
                              registry.resolve(warmths[i] if mixed else 0.0, []), stream=True)
                for i in range(ENGINE_REQUESTS)]

    try:
        engine_round(engine, requests(True), clock)  # warm-up
        runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for r in range(plan.engine_rounds):
            for mixed in (False, True):
                runs[mixed].append(engine_round(engine, requests(mixed), clock))
            clock.say(f"engine round {r + 1}/{plan.engine_rounds}: warmth 0 {runs[False][-1][0]:.0f} tok/s, "
                      f"mixed {runs[True][-1][0]:.0f} tok/s")
    finally:
        engine.close()
    tps = statistics.median(x[0] for x in runs[True])
    ttft = statistics.median(x[1] for x in runs[True])
    zero = statistics.median(x[0] for x in runs[False])
    ratio = statistics.median(m[0] / z[0] for m, z in zip(runs[True], runs[False], strict=True))
    return Row(f"engine, {ENGINE_REQUESTS} concurrent requests (mixed warmth)", "engine", tps, "tok/s", None,
               f"TTFT p50 {ttft:.3f} s; {plan.engine_tokens} tokens each; warmth 0: {zero:.1f} tok/s "
               f"(mixed/warmth 0 {ratio:.3f})")


# -- main ----------------------------------------------------------------------------------------------------------
def parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Plan, str, torch.dtype, str]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--device", default="auto", help="cuda, cuda:N or cpu (default: cuda if available, else cpu)")
    ap.add_argument("--dtype", default="auto", help="auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, "
                    "float16")
    ap.add_argument("--tiny", action="store_true", help="the tiny config (automatic without CUDA)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds per throughput measurement")
    ap.add_argument("--tokens", type=int, help="new tokens per row in the decode measurements")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the table as JSON here")
    args = ap.parse_args(argv)
    try:
        device, _ = resolve_device(args.device)
        dtype_name = resolve_dtype(args.dtype, device)
        dtype = torch_dtype(dtype_name)
    except DeviceError as exc:
        ap.error(str(exc))
    note = ""
    plan = FULL
    if args.tiny:
        plan, note = TINY, "--tiny: the tiny config"
    elif not device.startswith("cuda"):
        why = "no CUDA device here" if not torch.cuda.is_available() else f"device {device}"
        plan, note = TINY, f"{why}: the Llama-3.1-8B shapes need a GPU, so this runs the tiny config on {device}"
    for name in ("rounds", "tokens"):
        value = getattr(args, name)
        if value is not None and value < 1:
            ap.error(f"--{name} must be at least 1, got {value}")
    if args.rounds is not None:
        plan = Plan(**{**asdict(plan), "rounds": args.rounds})
    if args.tokens is not None:
        plan = Plan(**{**asdict(plan), "new_tokens": args.tokens})
    return args, plan, device, dtype, note


def main(argv: Sequence[str] | None = None) -> int:
    args, plan, device, dtype, note = parse(argv)
    clock = Clock(device)
    if note:
        clock.say(note)
    torch.set_grad_enabled(False)
    model = build_model(plan, device, dtype, args.seed)
    tok = make_tokenizer(model.config.vocab_size)
    loaded = LoadedModel(model=model, tokenizer=tok, name="gpu-check", path=Path("."), fingerprint=fingerprint(model))
    n = sum(p.numel() for p in model.parameters())
    params = f"{n / 1e9:.2f} B parameters" if n >= 1e8 else f"{n / 1e6:.2f} M parameters"
    clock.say(f"built {plan.name}: {params} on {device} in {dtype}")
    g = torch.Generator().manual_seed(args.seed + 1)
    rows = max(max(plan.batches), plan.equality_rows)
    prompts = torch.randint(len(SPECIALS), model.config.vocab_size, (rows, plan.prompt_len), generator=g).to(device)
    layer = loaded.num_layers // 2  # a middle layer, as the shipped dial uses (15 of 30)
    vec = make_vector(loaded, [layer], typical_norms(model, prompts, [layer]), args.seed + 2)

    device_name = torch.cuda.get_device_name(device) if device.startswith("cuda") else (
        f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)")
    report = Report({
        "device": device_name, "model": f"{plan.name} ({params})" + (
            f" [{note}]" if note else ""),
        "dtype": str(dtype).removeprefix("torch."), "torch": torch.__version__,
        "transformers": transformers.__version__,
        "settings": (f"prompt {plan.prompt_len} tokens, {plan.new_tokens} new tokens, {plan.rounds} interleaved "
                     f"rounds (median of per-round ratios), steered layer {layer}, coefficient {COEF} x typical "
                     f"norm {vec.norms[layer]:.3g}"),
    })
    report.rows += decode_checks(model, prompts, vec, plan, clock)
    equality = equality_check(model, prompts, vec, plan, clock)
    report.rows.append(engine_check(loaded, prompts, vec, plan, clock))
    report.rows.append(equality)
    report.wall_s = time.perf_counter() - clock.start
    print(report.table())
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.as_json(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
