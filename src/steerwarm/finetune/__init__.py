"""Stage 3, fine-tunes: supervised fine-tuning of the base model on the corpus's warm or cold variants (train) and
the shipped LoRA adapters merged on demand (shipped).

Invariant: a fine-tune is named one way everywhere: `warm`/`cold` for the shipped ones, `finetune=warm` as a target.
"""
