#!/usr/bin/env bash
# Example launch of the steerwarm server from a checkout, every option of `steerwarm serve` spelled out with its
# default. Copy and edit. For a service that restarts and runs unprivileged, use deploy/steerwarm.service instead.
# The API key comes from the environment (STEERWARM_API_KEY), so it never shows in `ps`; without one the server
# serves anyone who can reach the port, so it stays on 127.0.0.1 here.
set -euo pipefail
cd "$(dirname "$0")/.."

# export STEERWARM_API_KEY=...    # clients send: Authorization: Bearer $STEERWARM_API_KEY (/health needs none)
# export OMP_WAIT_POLICY=ACTIVE   # serve defaults to PASSIVE with a bounded spin (GOMP_SPINCOUNT=200000)
export HF_HUB_OFFLINE=1           # nothing is fetched from a model hub

exec .venv/bin/steerwarm serve \
    --model smollm2-135m \
    --vectors vectors \
    --host 127.0.0.1 \
    --port 8000 \
    --engine hf \
    --max-batch 32 \
    --max-queue 256 \
    --dtype float32 \
    --device cpu \
    --no-fast-kernels \
    --max-body-bytes 1048576 \
    --default-max-tokens 1024 \
    --log-level warning \
    --drain-seconds 30 \
    "$@"
    # more, passed through "$@" (e.g. server/serve.example.sh --port 8001):
    # --threads 2                    torch CPU threads (default: torch's choice)
    # --api-keys-file keys.txt       several keys with ids and per-key limits (kill -HUP reloads it)
    # --chat-template tmpl.jinja     for a model without a chat template
    # --allowed-host api.example.com another Host name it answers to (repeat; others get 403: DNS rebinding)
    # --cors-origin https://app.example.com  a browser origin allowed to call the API (repeat; CORS is off without)
