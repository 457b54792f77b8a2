"""Attribute a py-spy profile of `steerwarm serve` to where the serving time goes.

Reads py-spy's raw (collapsed) output recorded with --threads, e.g.

    py-spy record --pid PID --duration 40 --format raw --threads --nonblocking -o /tmp/prof.txt
    .venv/bin/python server/profile_breakdown.py /tmp/prof.txt

and prints, for the engine's worker thread and for all threads, the share of samples per category. A stack goes
to the first rule that matches it, in this order:
  kv-cache copies   the engine before KV slots: DynamicLayer.update (the cache grows by torch.cat each step),
                    Engine._join / _left_pad (newcomers left-padded and concatenated), cache index_select in
                    Engine._admit / Engine._drop
  kv slots          the engine on KV slots: SlotCache.update (one column written per row and layer), move (a
                    finished row's slot taken by the last row; extra choices), reserve (columns doubled)
  detokenisation    steerwarm/serve/text.py, tokenizer decode
  sampling          Engine._choose / _sample (argmax, sampling), logprobs in Engine._advance
  model forward     the rest under the model's forward (or the engine's lm_head), split into: attention
                    projections (Linear under the attention module), attention kernel (sdpa), rotary, MLP matmuls
                    (Linear under the MLP), MLP activation, RMSNorm, lm_head, steering/monitor hooks, masks, and
                    module-call overhead
  http/asyncio      the main thread: uvicorn, asyncio, routes, streaming (tokenisation of prompts shown apart)
  other python      everything else on the worker (engine bookkeeping, event hand-off, steering set-up)
py-spy only samples threads that are not idle, so shares are of busy samples.
"""

from __future__ import annotations

import argparse
import collections


def _has(frames: list[str], *needles: str) -> bool:
    return any(n in f for f in frames for n in needles)


def _parent_of(frames: list[str], leaf: str) -> str:
    """Name of the nearest enclosing frame that is a model module forward (skipping torch's call wrappers)."""
    idx = max(i for i, f in enumerate(frames) if f.startswith(leaf))
    for f in reversed(frames[:idx]):
        name = f.split(" (")[0]
        if name.startswith(("Module.", "_wrapped", "GradientCheckpointing", "can_return_tuple", "merge_with",
                            "capture_outputs")):
            continue
        return name
    return ""


def classify(frames: list[str], worker: bool) -> str:
    if not worker:
        if _has(frames, "_encode_plus", "apply_chat_template", "encode ("):
            return "http/asyncio: prompt tokenisation"
        return "http/asyncio"
    if _has(frames, "SlotCache.update"):
        return "kv slots: write of each step's keys/values"
    if _has(frames, "SlotCache.move"):
        return "kv slots: row moves (finished rows, extra choices)"
    if _has(frames, "SlotCache.reserve"):
        return "kv slots: columns doubled"
    if _has(frames, "DynamicLayer.update"):
        return "kv-cache copies: cache update (cat per step)"
    if _has(frames, "Engine._join", "_left_pad"):
        return "kv-cache copies: join (left-pad + cat)"
    if _has(frames, "engine.py:474", "engine.py:475"):
        return "kv-cache copies: admit (index_select)"
    if _has(frames, "Engine._drop"):
        return "kv-cache copies: drop (index_select)"
    if _has(frames, "steerwarm/serve/text.py", "PreTrainedTokenizerBase.decode", "TokenizersBackend._decode"):
        return "detokenisation"
    if _has(frames, "Engine._choose", "_sample (", "log_softmax"):
        return "sampling"
    if _has(frames, "Engine._lm_head"):
        return "model forward: lm_head"
    if _has(frames, "LlamaForCausalLM.forward", "LlamaModel.forward", "ForCausalLM.forward"):
        leaf = frames[-1].split(" (")[0]
        anchor = "Linear.forward"
        if "serve/kernels.py" in frames[-1]:
            anchor, leaf = leaf, "Linear.forward"  # the prepacked fast path stands in for nn.Linear.forward
        if _has(frames, "steerwarm/steer", "_MonitorHook", "steering"):
            return "model forward: steering/monitor hooks"
        if _has(frames, "masking_utils", "attention_masks"):
            return "model forward: mask creation"
        if leaf == "Linear.forward":
            parent = _parent_of(frames, anchor)
            if "Attention" in parent:
                return "model forward: attention projections (q/k/v/o)"
            if "MLP" in parent:
                return "model forward: MLP matmuls (gate/up/down)"
            if "ForCausalLM" in parent:
                return "model forward: lm_head"
            return f"model forward: Linear under {parent}"
        if _has(frames, "sdpa_attention_forward", "repeat_kv"):
            return "model forward: attention kernel (sdpa)"
        if _has(frames, "apply_rotary_pos_emb", "rotate_half", "RotaryEmbedding"):
            return "model forward: rotary"
        if _has(frames, "SiLU", "silu") or (leaf.startswith("LlamaMLP.forward")):
            return "model forward: MLP activation/mul"
        if _has(frames, "RMSNorm"):
            return "model forward: RMSNorm"
        if _has(frames, "Embedding.forward"):
            return "model forward: embedding"
        return "model forward: module-call overhead (python)"
    return "other python"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("profile", help="py-spy --format raw --threads output")
    ap.add_argument("--worker", default="steerwarm-engine", help="name of the engine's thread")
    args = ap.parse_args()
    cats: collections.Counter[tuple[bool, str]] = collections.Counter()
    phase: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    worker_total = 0
    for line in open(args.profile):
        line = line.rstrip("\n")
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        thread = frames[0]
        threads[thread] += n
        worker = args.worker in thread
        cats[(worker, classify(frames[1:], worker))] += n
        if worker:
            worker_total += n
            phase["prefill (Engine._admit)" if _has(frames, "Engine._admit") else
                  "decode (Engine._decode)" if _has(frames, "Engine._decode") else "other"] += n
    total = sum(threads.values())
    print(f"samples: {total} in all; by thread: " + ", ".join(f"{t}: {n}" for t, n in threads.most_common()))
    print("worker phases: " + ", ".join(f"{p} {100 * n / worker_total:.1f}%" for p, n in phase.most_common()))
    print(f"\n{'category':<52}{'samples':>8}{'% worker':>10}{'% all':>8}")
    groups: collections.Counter[tuple[bool, str]] = collections.Counter()
    for (worker, cat), n in sorted(cats.items(), key=lambda kv: -kv[1]):
        share = f"{100 * n / worker_total:.1f}" if worker and worker_total else "-"
        print(f"{cat:<52}{n:>8}{share:>10}{100 * n / total:>8.1f}")
        groups[(worker, cat.split(":")[0])] += n
    print(f"\n{'group':<52}{'samples':>8}{'% worker':>10}{'% all':>8}")
    for (worker, g), n in groups.most_common():
        share = f"{100 * n / worker_total:.1f}" if worker and worker_total else "-"
        print(f"{g:<52}{n:>8}{share:>10}{100 * n / total:>8.1f}")


if __name__ == "__main__":
    main()
