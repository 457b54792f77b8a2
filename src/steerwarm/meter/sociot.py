"""SocioT: relational-frame likelihood ratio.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from steerwarm.model.load import LoadedModel
from steerwarm.model.logprobs import mean_logprob

# Chosen by measurement (scripts/socio_frames.py): from 12 warm and 12 cold candidate frames of our own, the 4 + 4 that
# best separated warm from neutral and neutral from cold on 60 TRAIN-split triples; checked on the validation split.
WARM_FRAMES = ('My grandmother held my hand and said, "', 'My kind neighbour smiled and said, "',
               'A caring nurse sat with me and said, "', 'My favourite teacher gently said, "')
COLD_FRAMES = ('My opponent said, "', 'The tyrant said, "', 'The clerk behind the counter said flatly, "',
               'The automated system replied, "')
MAX_CHARS = 300


def socio_t(scorer: LoadedModel, texts: Sequence[str], batch_size: int = 16) -> list[float]:
    """SocioT warmth of each text under `scorer` (see module docstring)."""
    cut = [t[:MAX_CHARS].strip() or "." for t in texts]
    frames = WARM_FRAMES + COLD_FRAMES
    prefixes = [f for t in cut for f in frames]
    conts = [t for t in cut for _ in frames]
    scores = mean_logprob(scorer, prefixes, conts, batch_size=batch_size)
    k = len(frames)
    out = []
    for i in range(len(cut)):
        row = scores[i * k:(i + 1) * k]
        out.append(float(np.mean(row[: len(WARM_FRAMES)]) - np.mean(row[len(WARM_FRAMES):])))
    return out
