"""Running the app under uvicorn with steerwarm's signals: SIGTERM drains, SIGHUP reloads the keys file.

Invariants:
- SIGTERM (or SIGINT): uvicorn closes the listener at once (new connections are refused) and closes idle
  keep-alive connections; requests already accepted run on (`Server.begin_drain`). `drain_seconds` after the
  signal, whatever still runs is cut (`Server.cut_inflight`): a stream gets a final error event
  (`server_shutting_down`) and `[DONE]`, a non-streamed request a 503 error object. uvicorn then stops the engine
  (lifespan) and `run` returns, so the process exits 0 after SIGTERM. A connection that still has not finished
  `DELIVER_SECONDS` after the cut (a client that stopped reading) is cancelled by uvicorn.
- SIGHUP reloads the keys file (`Server.reload_keys`) in the event loop, between requests' steps: a request already
  admitted keeps its key; without a keys file it only logs that there is nothing to reload.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import socket
from types import FrameType

import uvicorn
from fastapi import FastAPI

from steerwarm.serve.server import Server

log = logging.getLogger("steerwarm.serve")
DELIVER_SECONDS = 5.0  # after the cut, time for the final error events to reach their clients


class _Uvicorn(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, server: Server, drain_seconds: float) -> None:
        super().__init__(config)
        self.app_server = server
        self.drain_seconds = drain_seconds
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.loop.add_signal_handler(signal.SIGHUP, self._reload)
        await super().startup(sockets=sockets)

    def _reload(self) -> None:
        if self.app_server.keys.path is None:
            log.warning("SIGHUP: no --api-keys-file to reload")
        else:
            self.app_server.reload_keys()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit and self.loop is not None:
            log.warning("%s received", signal.Signals(sig).name)
            self.loop.call_soon_threadsafe(self.app_server.begin_drain, self.drain_seconds)
        super().handle_exit(sig, frame)


def run(app: FastAPI, *, host: str, port: int, log_level: str, drain_seconds: float) -> None:
    """Serve `app` (from `routes.create_app`) until SIGTERM or SIGINT, then drain (see the module doc)."""
    server: Server = app.state.server
    config = uvicorn.Config(app, host=host, port=port, http="h11", log_level=log_level, lifespan="on",
                            timeout_graceful_shutdown=math.ceil(drain_seconds + DELIVER_SECONDS))
    # uvicorn re-raises the signal that stopped it once it is done; a SIGTERM that was handled ends the process
    # normally instead (exit status 0), which is what a supervisor reads as a clean stop.
    previous = signal.signal(signal.SIGTERM, lambda _sig, _frame: None)
    try:
        _Uvicorn(config, server, drain_seconds).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
