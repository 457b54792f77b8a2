"""Stage 2, steering: the SteeringVector file (unit directions, typical norms, calibration, GGUF), forward hooks
that add them with one coefficient per batch row, the calibrated warmth dial, steered generation and the answer
cache.

Invariant: coefficient 0 (warmth 0) is bit-identical to the unsteered model, and no hook outlives its context.
"""
