#!/usr/bin/env bash
# The same study on the paper's item sets (read from ../shared/data, never copied): the first 24 items of each task,
# every context of the paper's interpersonal_contexts.json and every template (28 prompts per item), likelihood
# mode, dial values -1, 0, +1; as references the shipped fine-tunes at epochs 1 and 2 and the warm and cold system
# prompts; report into eval/sweeps/paper-$DTYPE/ (DTYPE: the model's dtype for every point, default float32).
set -euo pipefail
cd "$(dirname "$0")/../.."
SWEEPS=${SWEEPS:-$HOME/.cache/steerwarm/sweeps}
DATA=${DATA:-../shared/data}
DTYPE=${DTYPE:-float32}
THREADS=${THREADS:-2}
export OMP_WAIT_POLICY=PASSIVE
.venv/bin/steerwarm sweep run --warmth=-1,0,1 --tasks trivia,truthfulqa,disinfo,medqa --mode likelihood --limit 24 \
  --items trivia=$DATA/triviaqa/warm_ai_trivia_items.jsonl \
  --items truthfulqa=$DATA/truthfulqa/warm_ai_truthfulqa_items.jsonl \
  --items disinfo=$DATA/mask/disinfo_items.jsonl --items medqa=$DATA/medqa/medqa_usmle_5options_test.jsonl \
  --contexts $DATA/warm_ai_2025/interpersonal_contexts.json --meter-prompts 0 \
  --reference finetune=warm --reference finetune=cold --reference finetune=warm-epoch2 \
  --reference finetune=cold-epoch2 --reference prompt=warm --reference prompt=cold --dtype "$DTYPE" \
  --threads "$THREADS" --out "$SWEEPS/paper-$DTYPE"
.venv/bin/steerwarm sweep report "$SWEEPS/paper-$DTYPE" --out "eval/sweeps/paper-$DTYPE" --paper-dir $DATA/warm_ai_2025/summary_data
