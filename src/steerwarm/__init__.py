"""steerwarm: steer a language model's warmth at inference time.

Invariant: importing the package is cheap (no torch, no model load); heavy modules are imported where used.
"""

from __future__ import annotations

__version__ = "0.1.0"
