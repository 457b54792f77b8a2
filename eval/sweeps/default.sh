#!/usr/bin/env bash
# The steered-versus-fine-tuned study on our default items (eval/items, eval/contexts/default.json): 13 dial values
# -1.5..+1.5 with the shipped calibrated vectors (vectors/warm|cold.safetensors), the shipped warm and cold
# fine-tunes as references, likelihood mode, a seeded subsample of 3 of each item's 28 prompts (the same prompts at
# every point), a warmth meter reading per point (16 validation prompts); then the report into eval/sweeps/default/.
# Raw results stay in $SWEEPS (default ~/.cache/steerwarm/sweeps); rerun the same command to resume.
set -euo pipefail
cd "$(dirname "$0")/../.."
SWEEPS=${SWEEPS:-$HOME/.cache/steerwarm/sweeps}
export OMP_WAIT_POLICY=PASSIVE
.venv/bin/steerwarm sweep run --warmth=-1.5:1.5:0.25 --tasks trivia,truthfulqa,disinfo,medqa --mode likelihood \
  --per-item 3 --meter-prompts 16 --reference finetune=warm --reference finetune=cold --threads 2 --out "$SWEEPS/default"
.venv/bin/steerwarm sweep report "$SWEEPS/default" --out eval/sweeps/default
