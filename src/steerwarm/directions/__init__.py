"""Stage 4, directions: residual-stream activations over response tokens (activations, resumable shards),
aggregators that turn them into directions, and the sources (fine-tune diff, contrast, system prompt, difference).

Invariant: every source produces the same `SteeringVector`, with its provenance and the typical norms of its layers.
"""
