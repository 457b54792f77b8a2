"""Measurement: how fast the warm (or cold) LoRA fine-tune learns at several learning rates, same first steps.

Every run sees the same examples in the same order at step k (the sample order is a pure function of the seed), so
the training losses of the first N steps are directly comparable across learning rates. A run folder that already
has these steps (the default run of `steerwarm finetune train`) is read instead of retrained.

Usage: .venv/bin/python scripts/lr_probe.py [--variant warm] [--steps 6] [--lr 1e-5 --lr 1e-4 ...]
About 45 s per step on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from steerwarm.finetune.train import TrainConfig, default_run_dir, train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", default="warm")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--lr", type=float, action="append")
    args = ap.parse_args()
    rows: dict[float, list[float]] = {}
    shipped = default_run_dir(TrainConfig(variant=args.variant, epochs=2.0, checkpoints=(0.5, 1.0, 2.0)))
    state = shipped / "state" / "trainer.json"
    if state.is_file():
        meta = json.loads(state.read_text())
        rows[float(meta["config"]["learning_rate"])] = list(meta["losses"][: args.steps])
    for lr in args.lr or [1e-5, 1e-4]:
        cfg = TrainConfig(variant=args.variant, epochs=2.0, checkpoints=(2.0,), lr=lr, save_every=1000)
        with tempfile.TemporaryDirectory() as tmp:
            rows[lr] = train(cfg, Path(tmp), stop_after=args.steps).losses[: args.steps]
    print(f"| lr | loss at steps 1..{args.steps} | last - first |\n|---|---|---|")
    for lr, losses in sorted(rows.items()):
        print(f"| {lr:g} | {' '.join(f'{x:.3f}' for x in losses)} | {losses[-1] - losses[0]:+.3f} |")


if __name__ == "__main__":
    main()
