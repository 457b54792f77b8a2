#!/usr/bin/env bash
# Inspection reports of the shipped dial vectors into eval/vectors/{warm,cold}/: per-layer norms, cosines with the
# raw model diffs and the two contrasts, probe accuracy (the `vector extract finetune` activation caches, when
# present), the logit lens at the steered layer, and projections of base, steered (warmth -1 / +1) and fine-tuned (warm / cold)
# answers to every third of the 156 validation prompts (52; eval/warmth/dial/responses.jsonl) onto the direction.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-$HOME/.cache/steerwarm/runs}
TEXTS=$(mktemp -d)
.venv/bin/python - "$TEXTS" <<'PY'
import json, sys
out = sys.argv[1]
files = {}
rows = [json.loads(line) for line in open("eval/warmth/dial/responses.jsonl", encoding="utf-8")]
ids = sorted({r["id"] for r in rows})[::3]  # every third prompt: the projections take ~1 s per answer here
for r in (r for r in rows if r["id"] in ids):
    name = r["target"].replace("=", "")
    if name not in files:
        files[name] = open(f"{out}/{name}.jsonl", "w", encoding="utf-8")
    files[name].write(json.dumps({"prompt": r["prompt"], "text": r["text"]}, ensure_ascii=False) + "\n")
for fh in files.values():
    fh.close()
PY
caches=()
for v in warm cold; do [ -d "$RUNS/finetune-$v/acts" ] && caches+=(--cache "$RUNS/finetune-$v"); done
for v in warm cold; do
  .venv/bin/steerwarm vector inspect vectors/$v.safetensors --out eval/vectors/$v "${caches[@]}" \
    --against vectors/raw/finetune-warm-mean.safetensors --against vectors/raw/finetune-cold-mean.safetensors \
    --against vectors/raw/corpus-contrast.safetensors --against vectors/raw/system-prompt-contrast.safetensors \
    --texts base="$TEXTS/base.jsonl" --texts warmth-1="$TEXTS/warmth-1.jsonl" --texts warmth+1="$TEXTS/warmth1.jsonl" \
    --texts finetune-warm="$TEXTS/finetunewarm.jsonl" --texts finetune-cold="$TEXTS/finetunecold.jsonl"
done
rm -rf "$TEXTS"
