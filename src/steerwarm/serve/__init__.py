"""Stage 11, the OpenAI-compatible server: protocol (pydantic wire models), engine (continuous batching with a
steering coefficient per row), registry (vectors, dial, monitor), server (shared request plumbing), one module per
endpoint (chat, completions, models), streaming, routes (the FastAPI app, errors, metrics middleware).

Invariant: the server reuses the library (model, steering, dial) and never re-implements it; one worker thread owns
the model, so all model state changes happen on that thread.
"""
