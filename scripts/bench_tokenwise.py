"""What one step of the vLLM plugin's steering costs on the CPU: every wrapped layer through the custom operator (what
a compiled or captured graph runs) against the eager path (plain torch calls; layers no row of the step steers are
skipped), for the shipped vectors (the plugin wraps every layer they have a direction at) and a batch of 16 requests
with 16 distinct warmth values at the dial's layer. Interleaved rounds in one process; prints per-step medians and
their ratio, and checks that both paths give the same output bit for bit.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/bench_tokenwise.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from steerwarm.paths import shipped_vectors
from steerwarm.steer.dial import Dial
from steerwarm.steer.tokenwise import LayerDirections, TokenSteering, steer_add
from steerwarm.steer.vector import SteeringVector

REQUESTS = 16
CALLS = 50
ROUNDS = 7


def shipped_tokens() -> tuple[TokenSteering, Dial]:
    vectors = {p.stem: SteeringVector.load(p) for p in sorted(shipped_vectors().glob("*.safetensors"))}
    names_at: dict[int, list[str]] = {}
    for name, vec in sorted(vectors.items()):
        for layer in vec.directions:
            names_at.setdefault(layer, []).append(name)
    layers = [LayerDirections(layer, tuple(names), torch.stack([vectors[n].directions[layer] for n in names]),
                              tuple(vectors[n].norms[layer] for n in names))
              for layer, names in sorted(names_at.items())]
    return TokenSteering(layers, max_tokens=2048, device="cpu"), Dial(vectors["warm"], vectors.get("cold"))


def step(tokens: TokenSteering, rows: np.ndarray, counts: list[int], hidden: torch.Tensor, *, graph: bool
         ) -> torch.Tensor:
    tokens.fill(rows, counts)
    x = hidden
    for layer in tokens.columns:
        x = steer_add(x, tokens.coefs[layer], tokens.directions[layer]) if graph else tokens.apply(layer, x)
    return x


def median_us(fn: Callable[[], torch.Tensor]) -> float:
    start = time.perf_counter()
    for _ in range(CALLS):
        fn()
    return (time.perf_counter() - start) / CALLS * 1e6


def main() -> None:
    torch.set_num_threads(2)
    tokens, dial = shipped_tokens()
    layer = dial.warm.layers[0]
    rows = np.stack([tokens.row({layer: {"warm": dial.coefficients(w)[0]}})
                     for w in np.linspace(0.1, 1.0, REQUESTS)])
    print(f"{len(tokens.columns)} wrapped layers, {tokens.width} directions; {REQUESTS} requests, each its own warmth")
    for n_tok in (REQUESTS, 215):
        counts = [1] * REQUESTS if n_tok == REQUESTS else [n_tok - (REQUESTS - 1)] + [1] * (REQUESTS - 1)
        hidden = torch.randn(n_tok, tokens.directions[layer].shape[1])

        def op(c: list[int] = counts, h: torch.Tensor = hidden) -> torch.Tensor:
            return step(tokens, rows, c, h, graph=True)

        def eager(c: list[int] = counts, h: torch.Tensor = hidden) -> torch.Tensor:
            return step(tokens, rows, c, h, graph=False)

        assert torch.equal(op(), eager())
        times: dict[str, list[float]] = {"op": [], "eager": []}
        for r in range(ROUNDS):
            order = [("op", op), ("eager", eager)]
            for name, fn in order if r % 2 == 0 else order[::-1]:
                times[name].append(median_us(fn))
        a, b = float(np.median(times["op"])), float(np.median(times["eager"]))
        print(f"{n_tok:4d} tokens/step: operator at every layer {a:8.0f} us, eager path {b:6.0f} us  (x{a / b:.1f})")


if __name__ == "__main__":
    main()
