"""`python -m steerwarm.cli`: the steerwarm command line."""

from steerwarm.cli.app import app

app()
