"""The "no engine" baseline: plain transformers `generate` with static batching on the same prompts as compare_peers.

For each batch size, takes that many of compare_peers' prompts (cycled), applies the model's chat template, and
times `model.generate` (greedy, --new-tokens new tokens, min_new_tokens = max_new_tokens so every row makes them
all), --repeats times after one warm-up call. Prints tokens/s = batch x new tokens / seconds (best and median).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python server/generate_baseline.py --batch 1 16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_peers import PROMPTS

from steerwarm.model.load import load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lm = load(args.model, dtype=args.dtype)
    tok, model = lm.tokenizer, lm.model
    print(f"model {lm.name} ({args.dtype}), torch threads {torch.get_num_threads()}")
    for b in args.batch:
        texts = [tok.apply_chat_template([{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}], tokenize=False,
                                         add_generation_prompt=True) for i in range(b)]
        enc = tok(texts, return_tensors="pt", padding=True)
        kw = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
                  pad_token_id=tok.pad_token_id)
        times = []
        with torch.inference_mode():
            model.generate(**enc, **kw)  # warm-up
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                out = model.generate(**enc, **kw)
                times.append(time.perf_counter() - t0)
        made = (out.shape[1] - enc["input_ids"].shape[1]) * b
        print(f"batch {b:>3}: {made} tokens, best {made / min(times):.1f} tok/s, median "
              f"{made / statistics.median(times):.1f} tok/s ({', '.join(f'{t:.2f}' for t in times)} s)", flush=True)


if __name__ == "__main__":
    main()
