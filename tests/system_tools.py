"""Locating Debian binaries that some tests need (chromium, prometheus, promtool, systemd-analyze).

Invariant: a missing binary skips the test with a reason naming it and how to install it, except when the
environment variable CI is set (to anything non-empty): there the test set-up (scripts/setup) must have installed it,
so the test fails instead of silently not running.
"""

from __future__ import annotations

import os
import shutil

import pytest


def require_binary(name: str, hint: str = "") -> str:
    """The absolute path of executable `name` (a bare name looked up on PATH, or a path); skip the calling test when
    it is missing, or fail when CI is set. `hint` is added to the message (e.g. the Debian package to install)."""
    found = shutil.which(name)
    if found is not None:
        return found
    why = f"{name} not found" + (f" ({hint})" if hint else "") + "; scripts/setup installs it"
    if os.environ.get("CI"):
        pytest.fail(f"{why}, and CI is set: the test set-up must provide it")
    pytest.skip(why)
