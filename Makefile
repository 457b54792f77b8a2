# The two README commands. Both create or reuse .venv, install pinned dependencies and prepare the default model.
.PHONY: run demo test setup lint

setup:
	./scripts/setup

run: setup
	.venv/bin/steerwarm serve

test:
	STEERWARM_EXTRAS=dev,interp ./scripts/setup
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check src tests
	.venv/bin/mypy

demo: setup
	.venv/bin/steerwarm demo
