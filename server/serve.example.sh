#!/usr/bin/env bash
# Example launch of the steerwarm server with every option spelled out. Copy and edit.
# The API key is read from the environment (STEERWARM_API_KEY) so it never shows in `ps`.
set -euo pipefail
cd "$(dirname "$0")/.."

export STEERWARM_API_KEY="${STEERWARM_API_KEY:-change-me}"   # clients send: Authorization: Bearer $STEERWARM_API_KEY
# export OMP_WAIT_POLICY=ACTIVE   # serve defaults to PASSIVE (much faster on a CPU shared with other work)

exec .venv/bin/steerwarm serve \
    --model smollm2-135m \
    --vectors vectors \
    --host 127.0.0.1 \
    --port 8000 \
    --max-batch 32 \
    --max-queue 256 \
    --dtype float32 \
    --max-body-bytes 1048576 \
    --default-max-tokens 1024 \
    --log-level warning
    # --threads 2                  # torch CPU threads (default: torch's choice)
