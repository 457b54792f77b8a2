"""Stage 0, the warmth corpus: schema and loading (schema), validation prompts (validation), rule-based query types
(classify), checks, rewriters (rules, rewrite) and their instructions (prompts), statistics.

Invariant: the shipped corpus lives in `corpus/data/{split}/{query_type}.jsonl` inside the package (found through
`steerwarm.paths.corpus_data()`), so an installed steerwarm can train and score without the source tree.
"""
