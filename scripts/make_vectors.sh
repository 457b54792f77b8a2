#!/usr/bin/env bash
# Rebuild the shipped warmth dial (vectors/warm.safetensors, vectors/cold.safetensors, their cards) from the shipped
# fine-tunes (vectors/finetunes/{warm,cold}). Each step resumes from its cache folder under $WORK if interrupted.
# Times on the 2-core CI-size machine: extraction 10-14 min per fine-tune, layer choice 4-6 min per vector,
# calibration 8-10 min per vector, contrasts ~1 min each.
set -euo pipefail
cd "$(dirname "$0")/.."
SW=.venv/bin/steerwarm
WORK=${WORK:-$HOME/.cache/steerwarm/runs}
export OMP_WAIT_POLICY=PASSIVE
mkdir -p "$WORK"
made() { [ -f "$1" ] && echo "have $1 (delete it to remake)"; }

# 1. raw model-diff directions (fine-tune minus base on the same tokens), layers 4-26
for v in warm cold; do
  made vectors/raw/finetune-$v-mean.safetensors || $SW vector extract finetune --finetune $v --layers 4-26 \
    --max-tokens 96 --cache "$WORK/finetune-$v" --out vectors/raw/finetune-$v-mean.safetensors
done
# 2. what separates the two fine-tunes (their shared fine-tuning shift cancels)
made vectors/raw/finetune-warm-minus-cold.safetensors || $SW vector difference \
  vectors/raw/finetune-warm-mean.safetensors vectors/raw/finetune-cold-mean.safetensors \
  --out vectors/raw/finetune-warm-minus-cold.safetensors --name finetune-warm-minus-cold
made vectors/raw/finetune-cold-minus-warm.safetensors || $SW vector difference \
  vectors/raw/finetune-cold-mean.safetensors vectors/raw/finetune-warm-mean.safetensors \
  --out vectors/raw/finetune-cold-minus-warm.safetensors --name finetune-cold-minus-warm
# 3. the other sources, for the cards' cosines
made vectors/raw/corpus-contrast.safetensors || $SW vector extract corpus --out vectors/raw/corpus-contrast.safetensors
made vectors/raw/system-prompt-contrast.safetensors || $SW vector extract system-prompt \
  --out vectors/raw/system-prompt-contrast.safetensors
# 4. layer choice by effect (warmth gained vs NLL added) at 0.2 x typical norm
made "$WORK/warm-layer.safetensors" || $SW vector choose-layer vectors/raw/finetune-warm-minus-cold.safetensors \
  --sense warm --layers 6,9,12,15,18,21,24 --rel-coef 0.2 --cache "$WORK/layers-warm" --out "$WORK/warm-layer.safetensors"
made "$WORK/cold-layer.safetensors" || $SW vector choose-layer vectors/raw/finetune-cold-minus-warm.safetensors \
  --sense cold --layers 6,9,12,15,18,21,24 --rel-coef 0.2 --cache "$WORK/layers-cold" --out "$WORK/cold-layer.safetensors"
# 5. calibration: dial 1 = as warm as the warm fine-tune (first 48 validation prompts), as cold as the cold
#    fine-tune (all 156: calibrated on the first 48, dial -1 came out colder than the cold fine-tune on all 156)
made vectors/warm.safetensors || $SW vector calibrate "$WORK/warm-layer.safetensors" --finetune warm --coefs 0.025,0.05,0.075,0.1,0.125,0.15,0.2,0.3 \
  --cache "$WORK/cal-warm" --out vectors/warm.safetensors
made vectors/cold.safetensors || $SW vector calibrate "$WORK/cold-layer.safetensors" --finetune cold --coefs 0.1,0.15,0.175,0.2,0.3 --limit 156 \
  --cache "$WORK/cal-cold-156" --out vectors/cold.safetensors
# 6. cards
for v in warm cold; do
  $SW vector card vectors/$v.safetensors --out vectors/$v.md --made-by "scripts/make_vectors.sh" \
    --against raw-warm=vectors/raw/finetune-warm-mean.safetensors \
    --against raw-cold=vectors/raw/finetune-cold-mean.safetensors \
    --against corpus=vectors/raw/corpus-contrast.safetensors \
    --against system-prompt=vectors/raw/system-prompt-contrast.safetensors
done
