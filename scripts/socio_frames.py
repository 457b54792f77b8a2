"""Measurement: choose SocioT's relational frames on the corpus's train split, check them on the validation split.

Scores every candidate frame (12 warm, 12 cold, our own words) on the first assistant turn of N train conversations
in its three variants, picks the 4 warm + 4 cold frames whose SocioT best separates warm from neutral AND neutral
from cold (maximising the smaller of the two mean margins), then reports the chosen frames' mean SocioT per variant
on the validation triples. The frames in src/steerwarm/warmth.py came from this script (60 train triples).

Usage: .venv/bin/python scripts/socio_frames.py [--train 60] [--validation-stride 1]
Slow on 2 cores: 60 train triples x 24 frames plus 156 validation triples x 8 frames take about 10-25 minutes.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from steerwarm.corpus.schema import load_corpus
from steerwarm.meter.sociot import MAX_CHARS
from steerwarm.model.load import LoadedModel, load
from steerwarm.model.logprobs import mean_logprob

WARM = ['My closest friend said, "', 'My partner told me, "', 'My mentor said, "', 'My hero once said, "',
        'When I was upset, my best friend hugged me and said, "', 'My grandmother held my hand and said, "',
        'My kind neighbour smiled and said, "', 'My sister, who always has my back, told me, "',
        'A caring nurse sat with me and said, "', 'My favourite teacher gently said, "',
        'My loving mother told me, "', 'My old friend wrote to me, "']
COLD = ['A stranger said, "', 'My opponent said, "', 'The inspector said, "', 'The tyrant said, "',
        'The clerk behind the counter said flatly, "', 'The automated system replied, "',
        'A bored official read out, "', 'The manual states, "', 'The terse email from the office said, "',
        'A rival sneered, "', 'The tax office letter said, "', 'The judge said coldly, "']


def triples(split: str, n: int | None, stride: int = 1) -> list[str]:
    convs = load_corpus(split)
    if n is not None:
        convs = convs[:: max(1, len(convs) // n)][:n]
    out = []
    for c in convs[::stride]:
        t = c.assistant_turns[0]
        out += [v[:MAX_CHARS].strip() for v in (t.neutral, t.warm, t.cold)]
    return out


def frame_scores(model: LoadedModel, texts: list[str], frames: list[str]) -> np.ndarray:
    """[text, frame] mean per-token log-probability of the text after the frame."""
    pre = [f for _ in texts for f in frames]
    cont = [t for t in texts for _ in frames]
    return np.array(mean_logprob(model, pre, cont, batch_size=32)).reshape(len(texts), len(frames))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=60)
    ap.add_argument("--validation-stride", type=int, default=1)
    args = ap.parse_args()
    model = load()
    s = frame_scores(model, triples("train", args.train), WARM + COLD).reshape(args.train, 3, -1)
    dwn = (s[:, 1] - s[:, 0]).mean(0)  # per frame: warm text minus neutral text
    dnc = (s[:, 0] - s[:, 2]).mean(0)  # per frame: neutral text minus cold text
    nw = len(WARM)
    best: tuple[float, tuple[int, ...], tuple[int, ...]] | None = None
    for wi in itertools.combinations(range(nw), 4):
        for ci in itertools.combinations(range(len(COLD)), 4):
            cols = [nw + c for c in ci]
            margin = min(dwn[list(wi)].mean() - dwn[cols].mean(), dnc[list(wi)].mean() - dnc[cols].mean())
            if best is None or margin > best[0]:
                best = (float(margin), wi, ci)
    assert best is not None
    warm, cold = [WARM[i] for i in best[1]], [COLD[i] for i in best[2]]
    print(f"train ({args.train} triples): smaller margin {best[0]:.4f}\nWARM_FRAMES = {warm}\nCOLD_FRAMES = {cold}")
    v = frame_scores(model, triples("validation", None, args.validation_stride), warm + cold)
    sc = (v[:, :4].mean(1) - v[:, 4:].mean(1)).reshape(-1, 3)
    m = sc.mean(0)
    print(f"validation ({len(sc)} triples): neutral {m[0]:.4f}  warm {m[1]:.4f}  cold {m[2]:.4f}  "
          f"ordered warm > neutral > cold: {bool(m[1] > m[0] > m[2])}")


if __name__ == "__main__":
    main()
