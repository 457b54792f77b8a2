"""Stage 1, the model: load (registry, embedded default, local folders, fingerprints), anatomy (decoder blocks
and what they return), chat templates, log-probabilities of continuations.

Invariant: nothing here knows about steering, warmth or benchmarks; every higher stage reads the model through it.
"""
