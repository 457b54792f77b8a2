"""Make a vectors folder with a provisional warmth dial, for running the server before calibrated vectors exist.

It copies an uncalibrated contrast vector (default: the shipped starter) and writes `warm`/`cold` from it with a
linear calibration (warmth 1 = raw coefficient --coef along it, warmth -1 = the same along its negation). The
calibration's note says it is provisional; replace the folder with the real `vectors/` once warm.safetensors and
cold.safetensors are calibrated.

    .venv/bin/python server/provisional_vectors.py /tmp/sw-vectors
    .venv/bin/steerwarm serve --vectors /tmp/sw-vectors
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from steerwarm.serve.registry import write_provisional_dial
from steerwarm.steer.vector import SteeringVector

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder to write (created if missing)")
    ap.add_argument("--source", type=Path, default=REPO / "vectors" / "starter-contrast.safetensors")
    ap.add_argument("--coef", type=float, default=0.3, help="raw coefficient at warmth 1")
    args = ap.parse_args()
    write_provisional_dial(SteeringVector.load(args.source), args.out, args.coef)
    shutil.copy(args.source, args.out / args.source.name)
    print(f"wrote {args.out}: warm, cold (warmth 1 = raw {args.coef} on {args.source.stem}), {args.source.name}")


if __name__ == "__main__":
    main()
