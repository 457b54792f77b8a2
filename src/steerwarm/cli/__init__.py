"""The `steerwarm` command line: one typer app (app), one module per noun group, shared options (options).

Invariant: thin: commands parse, call the library and print; no logic lives here that a library user would need.
"""
