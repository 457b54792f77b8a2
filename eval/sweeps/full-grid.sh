#!/usr/bin/env bash
# The full default grid: 13 dial values -1.5..+1.5 with the shipped calibrated vectors, EVERY prompt of the default
# items (4 tasks x 64 items x 28 prompts = 7168 prompts per dial value, 93 184 prompt-points), likelihood mode,
# forked (layers below the first steered layer run once per batch for all dial values), no references and no meter:
# the timing of issue 16's "full grid in 60 minutes" and the dial study at 3.5 times the prompts of default.sh.
# DTYPE (default float32) is the model's dtype for every point. Raw results stay in $SWEEPS (default
# ~/.cache/steerwarm/sweeps); rerun the same command to resume. The sweep's wall time is in sweep.json's sessions
# and in the report's run table.
set -euo pipefail
cd "$(dirname "$0")/../.."
SWEEPS=${SWEEPS:-$HOME/.cache/steerwarm/sweeps}
DTYPE=${DTYPE:-float32}
export OMP_WAIT_POLICY=PASSIVE
.venv/bin/steerwarm sweep run --warmth=-1.5:1.5:0.25 --tasks trivia,truthfulqa,disinfo,medqa --mode likelihood \
  --meter-prompts 0 --dtype "$DTYPE" --threads 2 --out "$SWEEPS/full-grid-$DTYPE"
.venv/bin/steerwarm sweep report "$SWEEPS/full-grid-$DTYPE" --out "eval/sweeps/full-grid-$DTYPE"
