"""SocioT: the relational-frame likelihood ratio, in the paper's spirit with our own frames.

A causal LM reads the text after warm relational frames ("My grandmother held my hand and said, ...") and after cold
ones ("The clerk behind the counter said flatly, ..."); the score is the mean over warm frames minus the mean over
cold frames of the text's mean per-token log-probability. Higher = the text sounds like something said in a warm
relationship. The frames were selected on the corpus's train split only (scripts/socio_frames.py); on all 156
validation triples the means order warm > neutral > cold (-0.0055, -0.0310, -0.0384; paired differences
0.0255 +/- 0.0052 and 0.0073 +/- 0.0043, bootstrap SE).

Invariant: only the text's own tokens are scored (the frame is context), the text cut to MAX_CHARS characters:
scoring the whole framed sequence did not separate warm from cold texts on this model.
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
