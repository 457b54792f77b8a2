"""The OpenAI-compatible server: protocol (pydantic wire models), engine (continuous batching with a steering
coefficient per row), app (FastAPI routes, errors, auth, metrics) and the `steerwarm serve` command.

Invariant: the server reuses the library (models, steering, dial, generation) and never re-implements it; one
worker thread owns the model, so all model state changes happen on that thread.
"""
