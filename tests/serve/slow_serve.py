"""`python -m tests.serve.slow_serve serve ...`: `steerwarm serve` with every engine step slowed by
STEERWARM_TEST_STEP_DELAY seconds, a stand-in for a slower model, so that on the tiny model a request stays in flight
for seconds (the drain tests send a real SIGTERM while it runs). Nothing else differs from `python -m steerwarm.cli`.
"""

from __future__ import annotations

import os
import time

from steerwarm.cli.app import app
from steerwarm.serve.engine import Engine

DELAY = float(os.environ["STEERWARM_TEST_STEP_DELAY"])
_step = Engine.step


def _slow_step(self: Engine) -> None:
    time.sleep(DELAY)
    _step(self)


Engine.step = _slow_step  # type: ignore[method-assign]
app()
