#!/usr/bin/env bash
# Rebuild the shipped warmth dial (vectors/warm.safetensors, vectors/cold.safetensors, their cards) from the shipped
# fine-tunes (vectors/sft/{warm,cold}). Each step resumes from its cache folder under $WORK if interrupted.
# Times on the 2-core CI-size machine: extraction 10-14 min per fine-tune, layer choice 4-6 min per vector,
# calibration 8-10 min per vector, contrasts ~1 min each.
set -euo pipefail
cd "$(dirname "$0")/.."
SW=.venv/bin/steerwarm
WORK=${WORK:-$HOME/.cache/steerwarm/runs}
export OMP_WAIT_POLICY=PASSIVE
mkdir -p "$WORK"
made() { [ -f "$1" ] && echo "have $1 (delete it to remake)"; }

# 1. raw model-diff directions (tuned minus base on the same tokens), layers 4-26
for v in warm cold; do
  made vectors/raw/sft-$v-mean.safetensors || $SW extract sft --tuned $v --layers 4-26 --max-tokens 96 \
    --cache "$WORK/sft-$v" --out vectors/raw/sft-$v-mean.safetensors
done
# 2. what separates the two fine-tunes (their shared fine-tuning shift cancels)
made vectors/raw/sft-warm-minus-cold.safetensors || $SW extract difference vectors/raw/sft-warm-mean.safetensors vectors/raw/sft-cold-mean.safetensors \
  --out vectors/raw/sft-warm-minus-cold.safetensors --name sft-warm-minus-cold
made vectors/raw/sft-cold-minus-warm.safetensors || $SW extract difference vectors/raw/sft-cold-mean.safetensors vectors/raw/sft-warm-mean.safetensors \
  --out vectors/raw/sft-cold-minus-warm.safetensors --name sft-cold-minus-warm
# 3. the other sources, for the cards' cosines
made vectors/raw/corpus-contrast.safetensors || $SW extract corpus --out vectors/raw/corpus-contrast.safetensors
made vectors/raw/system-prompt-contrast.safetensors || $SW extract system-prompt --out vectors/raw/system-prompt-contrast.safetensors
# 4. layer choice by effect (warmth gained vs NLL added) at 0.2 x typical norm
made "$WORK/warm-layer.safetensors" || $SW choose-layer vectors/raw/sft-warm-minus-cold.safetensors --sense warm --layers 6,9,12,15,18,21,24 \
  --rel-coef 0.2 --cache "$WORK/layers-warm" --out "$WORK/warm-layer.safetensors"
made "$WORK/cold-layer.safetensors" || $SW choose-layer vectors/raw/sft-cold-minus-warm.safetensors --sense cold --layers 6,9,12,15,18,21,24 \
  --rel-coef 0.2 --cache "$WORK/layers-cold" --out "$WORK/cold-layer.safetensors"
# 5. calibration: dial 1 = as warm as the warm fine-tune (first 48 validation prompts), as cold as the cold
#    fine-tune (all 156: calibrated on the first 48, dial -1 came out colder than the cold fine-tune on all 156)
made vectors/warm.safetensors || $SW calibrate "$WORK/warm-layer.safetensors" --reference warm --coefs 0.025,0.05,0.075,0.1,0.125,0.15,0.2,0.3 \
  --cache "$WORK/cal-warm" --out vectors/warm.safetensors
made vectors/cold.safetensors || $SW calibrate "$WORK/cold-layer.safetensors" --reference cold --coefs 0.1,0.15,0.175,0.2,0.3 --limit 156 \
  --cache "$WORK/cal-cold-156" --out vectors/cold.safetensors
# 6. cards
for v in warm cold; do
  $SW card vectors/$v.safetensors --out vectors/$v.md --made-by "scripts/make_vectors.sh" \
    --against raw-warm=vectors/raw/sft-warm-mean.safetensors --against raw-cold=vectors/raw/sft-cold-mean.safetensors \
    --against corpus=vectors/raw/corpus-contrast.safetensors \
    --against system-prompt=vectors/raw/system-prompt-contrast.safetensors
done
