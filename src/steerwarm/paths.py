"""Where steerwarm keeps what it builds outside git: prepared models, fine-tunes, activation shards.

Invariant: every on-disk artefact lives under one root, `$STEERWARM_HOME` when set, else the user cache dir, so a
test can point the whole library at a temporary folder by setting one variable.
"""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir


def steerwarm_home() -> Path:
    """The root folder for steerwarm's cached artefacts (created on demand by callers)."""
    env = os.environ.get("STEERWARM_HOME")
    return Path(env).expanduser() if env else Path(user_cache_dir("steerwarm"))


def models_dir() -> Path:
    return steerwarm_home() / "models"
