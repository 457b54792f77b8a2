"""The steerwarm command line: the root typer app, wiring one group per noun in pipeline order, plus the
top-level `serve`, `generate` and `demo`.

`steerwarm model|vector|finetune|meter|bench|sweep|corpus ...` are the groups (cli/<noun>.py each);
`steerwarm serve|generate|demo` use the model with the dial.

Invariant: thin: no logic lives in the CLI that a library user would need; every command maps onto library
functions. This module only wires: it imports the group modules, none of them imports it (no cycles).
"""

from __future__ import annotations

import typer

from steerwarm.cli import bench, corpus, finetune, generate, meter, model, serve, sweep, vector

USE_PANEL = "Run the model"

app = typer.Typer(help="Steer a language model's warmth at inference time.", no_args_is_help=True,
                  pretty_exceptions_enable=False)

# Groups in pipeline order (typer lists them in the order they are added).
app.add_typer(model.app, name="model")
app.add_typer(vector.app, name="vector")
app.add_typer(finetune.app, name="finetune")
app.add_typer(meter.app, name="meter")
app.add_typer(bench.app, name="bench")
app.add_typer(sweep.app, name="sweep")
app.add_typer(corpus.app, name="corpus")

# Top-level commands, in their own help panel after the groups.
app.command("serve", rich_help_panel=USE_PANEL)(serve.serve_command)
app.command("generate", rich_help_panel=USE_PANEL)(generate.generate_command)
app.command("demo", rich_help_panel=USE_PANEL)(generate.demo_command)


if __name__ == "__main__":
    app()
