"""Matplotlib for files, never a screen: the Agg backend, one figure style of saving.

Invariant: every PNG steerwarm writes goes through `save_figure` (tight layout, 110 dpi, parent folder created,
figure closed so long sweeps do not accumulate open figures).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path
