"""`GET /v1/models` and `/v1/models/{id}`: the served model's card, with its vectors and the warmth dial.

Invariant: a model id is accepted with or without a `@warmth=W` suffix and must name the served model.
"""

from __future__ import annotations

from steerwarm.serve.protocol import (
    DialInfo,
    ModelCard,
    ModelExtras,
)
from steerwarm.serve.server import Server
from steerwarm.steer.dial import DIAL_RANGE


def model_card(server: Server) -> ModelCard:
    reg = server.registry
    dial = DialInfo(enabled=reg.dial is not None, range=DIAL_RANGE,
                    warm="warm" if reg.dial is not None else None,
                    cold="cold" if reg.dial is not None and reg.dial.cold is not None else None,
                    note=reg.dial_note)
    extras = ModelExtras(fingerprint=server.loaded.fingerprint, context_length=server.engine.context_length,
                         vectors={name: list(v.layers) for name, v in sorted(reg.vectors.items())}, dial=dial)
    return ModelCard(id=server.served, created=server.created, steerwarm=extras)

