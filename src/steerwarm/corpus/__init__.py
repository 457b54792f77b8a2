"""The warmth corpus: schema and loading (schema.py), rule-based query types, checks, rewriters.

Invariant: the shipped corpus lives in `corpus/data/{split}/{query_type}.jsonl` inside the package, so an installed
steerwarm can train and score without the source tree.
"""
