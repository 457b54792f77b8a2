"""Benchmark: what steering costs in generation throughput on the default model.

Prints, measured side by side in one run (configurations interleaved round-robin, medians over rounds, so machine
noise hits every configuration alike):
  steered / unsteered throughput at batch 1 and at batch 8, and
  8 different coefficients / 8 equal coefficients (both steered) at batch 8.
Every run generates exactly the same number of tokens (min_new_tokens = max_new_tokens), greedy.

Usage: .venv/bin/python scripts/bench_steering.py [--rounds 7] [--tokens 32]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from steerwarm.model.chat import chat_text
from steerwarm.model.load import load
from steerwarm.steer.hooks import SteerSpec, steer
from steerwarm.steer.vector import SteeringVector

ROOT = Path(__file__).resolve().parents[1]
USERS = ["How do I make a cup of tea?", "I failed my exam today.", "What is the capital of France?",
         "Give me a tip for sleeping better.", "Explain what a mortgage is.", "My cat seems tired lately.",
         "Write a line about autumn.", "How do I reverse a list in Python?"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()
    loaded = load(dtype=args.dtype)
    vec = SteeringVector.load(ROOT / "vectors" / "starter-contrast.safetensors")
    tok, model = loaded.tokenizer, loaded.model
    prompts = [chat_text(loaded, [{"role": "user", "content": u}]) for u in USERS]

    def run(batch: int, coefs: list[float] | None) -> Callable[[], float]:
        enc = tok(prompts[:batch], return_tensors="pt", padding=True, add_special_tokens=False)

        def go() -> float:
            specs = [SteerSpec(vec, coefs)] if coefs is not None else []
            t = time.perf_counter()
            with torch.inference_mode(), steer(model, specs):
                out = model.generate(**enc, max_new_tokens=args.tokens, min_new_tokens=args.tokens, do_sample=False,
                                     pad_token_id=tok.pad_token_id)
            dt = time.perf_counter() - t
            assert out.shape[1] - enc["input_ids"].shape[1] == args.tokens
            return batch * args.tokens / dt

        return go

    configs = {
        "b1 unsteered": run(1, None),
        "b1 steered": run(1, [0.25]),
        "b8 unsteered": run(8, None),
        "b8 steered equal": run(8, [0.25] * 8),
        "b8 steered mixed": run(8, [-0.3, -0.2, -0.1, 0.05, 0.1, 0.2, 0.25, 0.3]),
    }
    for go in configs.values():  # warm-up
        go()
    samples: dict[str, list[float]] = {k: [] for k in configs}
    for _ in range(args.rounds):
        for name, go in configs.items():
            samples[name].append(go())
    med = {k: statistics.median(v) for k, v in samples.items()}

    def ratio(a: str, b: str) -> float:
        # Median of per-round ratios: each round measures both configurations back to back.
        return statistics.median(x / y for x, y in zip(samples[a], samples[b], strict=True))

    print(f"threads={torch.get_num_threads()} dtype={args.dtype} tokens/run={args.tokens} rounds={args.rounds}")
    for k, v in med.items():
        print(f"  {k:<18} {v:8.1f} tok/s  (min {min(samples[k]):.1f}, max {max(samples[k]):.1f})")
    print(f"ratio steered/unsteered batch 1: {ratio('b1 steered', 'b1 unsteered'):.3f}")
    print(f"ratio steered/unsteered batch 8: {ratio('b8 steered equal', 'b8 unsteered'):.3f}")
    print(f"ratio 8 different / 8 equal coefficients: {ratio('b8 steered mixed', 'b8 steered equal'):.3f}")

if __name__ == "__main__":
    main()
