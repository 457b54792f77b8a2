"""Stage 5, targets: one registry of what can be measured, named by one string (`base`, `warmth=W`,
`finetune=NAME`, `prompt=warm|cold|FILE`, a model folder, `http://HOST:PORT/v1#MODEL`), with likelihood scoring of
reply pairs and the OpenAI-compatible endpoint client.

Invariant: every target answers byte-identical conversations, and `describe()` names all that determines them.
"""
