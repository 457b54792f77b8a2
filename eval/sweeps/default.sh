#!/usr/bin/env bash
# The dial-versus-prompt-versus-fine-tune study on our default items (eval/items, eval/contexts/default.json): 13 dial
# values -1.5..+1.5 with the shipped calibrated vectors (vectors/warm|cold.safetensors), forked (layers below the
# first steered one run once per batch); as references the shipped fine-tunes at epoch 1 and epoch 2 and the warm and
# cold system prompts; likelihood mode, a seeded subsample of 8 of each item's 28 prompts (the same prompts at every
# point), a warmth meter reading per point (64 validation prompts); then the report into eval/sweeps/default/.
# Raw results stay in $SWEEPS (default ~/.cache/steerwarm/sweeps); rerun the same command to resume.
set -euo pipefail
cd "$(dirname "$0")/../.."
SWEEPS=${SWEEPS:-$HOME/.cache/steerwarm/sweeps}
export OMP_WAIT_POLICY=PASSIVE
.venv/bin/steerwarm sweep run --warmth=-1.5:1.5:0.25 --tasks trivia,truthfulqa,disinfo,medqa --mode likelihood \
  --per-item 8 --meter-prompts 64 --reference finetune=warm --reference finetune=cold \
  --reference finetune=warm-epoch2 --reference finetune=cold-epoch2 --reference prompt=warm --reference prompt=cold \
  --threads 2 --out "$SWEEPS/default"
.venv/bin/steerwarm sweep report "$SWEEPS/default" --out eval/sweeps/default
