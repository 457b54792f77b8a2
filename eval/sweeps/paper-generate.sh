#!/usr/bin/env bash
# The paper's scoring on the paper's item sets (read from ../shared/data, never copied): generate mode, answers judged
# by the reference matcher (bench.matcher; its agreement with the authors' judge per task is in eval/validation/).
# The first 12 items of each task, a seeded subsample of 4 of each item's 28 prompts (every context and template of
# the paper's interpersonal_contexts.json can be drawn), greedy decoding, up to 96 new tokens; dial values -1, 0, +1,
# and as references the warm and cold system prompts and the shipped fine-tunes at epoch 1 and epoch 2.
# A small run sized for a 2-core CPU: it demonstrates the pipeline and the instrument's verdict, it cannot detect
# effects of the paper's size (the report's instrument section gives the minimum detectable effect).
# DTYPE (default float32) is the model's dtype for every point; the matcher's validation against the authors' labels
# (eval/validation/validate-judge.json, not committed) is written first, since the report states its kappa per task.
set -euo pipefail
cd "$(dirname "$0")/../.."
SWEEPS=${SWEEPS:-$HOME/.cache/steerwarm/sweeps}
DATA=${DATA:-../shared/data}
THREADS=${THREADS:-2}
DTYPE=${DTYPE:-float32}
export OMP_WAIT_POLICY=PASSIVE
.venv/bin/steerwarm bench validate-judge --shared "$DATA" --out eval/validation
.venv/bin/steerwarm sweep run --warmth=-1,0,1 --tasks trivia,truthfulqa,disinfo,medqa --mode generate --limit 12 \
  --per-item 4 --max-tokens 96 --temperature 0 \
  --items trivia=$DATA/triviaqa/warm_ai_trivia_items.jsonl \
  --items truthfulqa=$DATA/truthfulqa/warm_ai_truthfulqa_items.jsonl \
  --items disinfo=$DATA/mask/disinfo_items.jsonl --items medqa=$DATA/medqa/medqa_usmle_5options_test.jsonl \
  --contexts $DATA/warm_ai_2025/interpersonal_contexts.json --meter-prompts 0 \
  --reference prompt=warm --reference prompt=cold --reference finetune=warm --reference finetune=cold \
  --reference finetune=warm-epoch2 --reference finetune=cold-epoch2 --dtype "$DTYPE" --threads "$THREADS" --out "$SWEEPS/paper-generate"
.venv/bin/steerwarm sweep report "$SWEEPS/paper-generate" --out eval/sweeps/paper-generate \
  --paper-dir $DATA/warm_ai_2025/summary_data --matcher-validation eval/validation/validate-judge.json
