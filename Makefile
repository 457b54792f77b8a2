# The two README commands. Both create or reuse .venv, install pinned dependencies and prepare the default model.
.PHONY: run demo test test-vllm setup lint

setup:
	./scripts/setup

run: setup
	.venv/bin/steerwarm serve

test:
	STEERWARM_EXTRAS=dev,interp ./scripts/setup
	.venv/bin/python -m pytest -q --durations=30

# The vLLM plugin's tests: vLLM's CPU build in its own environment (.venv-vllm, about 5 minutes to install), the
# default model prepared by the main set-up. Separate from `make test` to keep that under 15 minutes; CI runs both.
test-vllm:
	./scripts/setup
	./scripts/setup-vllm
	.venv-vllm/bin/python -m pytest -q -m vllm tests/vllm

lint: setup
	.venv/bin/ruff check src tests
	.venv/bin/mypy

demo: setup
	.venv/bin/steerwarm demo
