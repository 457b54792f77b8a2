# The two README commands. Both create or reuse .venv, install pinned dependencies and prepare the default model.
.PHONY: run test setup lint

setup:
	./scripts/setup

run: setup
	.venv/bin/steerwarm demo

test: setup
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check src tests
	.venv/bin/mypy
