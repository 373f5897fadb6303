"""Serving the app with uvicorn, and stopping gracefully: on SIGTERM (or Ctrl-C) the server stops
accepting, running completions get ``grace_seconds`` to finish, then the rest are cancelled (their
clients get a 503 with the partial answer) and every sandbox is closed before the process exits."""

from __future__ import annotations

import asyncio
import logging
import socket
from types import FrameType
from typing import Any

import uvicorn

from rlm_core.serve.app import Service, create_app

log = logging.getLogger("rlm.serve")
# After the grace period and the cancellations, this long for the 503s to reach their clients.
_ANSWER_MARGIN = 5.0


class _Server(uvicorn.Server):
    """uvicorn's server, telling the service when a stop signal arrives."""

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopper: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None and self._stopper is None:
            self._loop.call_soon_threadsafe(self._begin_stop)

    def _begin_stop(self) -> None:
        if self._stopper is None:
            self._stopper = asyncio.ensure_future(self._stop_completions())

    async def _stop_completions(self) -> None:
        completions = self.service.completions
        completions.stopping = True
        grace = self.service.config.server.grace_seconds
        if len(completions):
            log.info("stopping: %d completion(s) running, %gs to finish", len(completions), grace)
        await completions.wait_all(grace)
        if len(completions):
            log.info("stopping: cancelling %d completion(s)", len(completions))
            await completions.cancel_all("shutdown")


def serve(service: Service, host: str, port: int, *, log_level: str = "info", ready: Any = None) -> None:
    """Serve until SIGTERM / Ctrl-C. ``ready(port)`` is called once the socket listens."""
    grace = service.config.server.grace_seconds
    config = uvicorn.Config(
        create_app(service),
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=int(grace + _ANSWER_MARGIN + 1),
        # The engine's own loop policy is asyncio's; keep the default loop and h11 unless httptools is there.
        lifespan="on",
        server_header=False,
    )
    server = _Server(config, service)

    if ready is not None:
        original_startup = server.startup

        async def startup(sockets: list[socket.socket] | None = None) -> None:
            await original_startup(sockets)
            bound = next((s.getsockname()[1] for srv in server.servers for s in srv.sockets), port)
            ready(bound)

        server.startup = startup  # type: ignore[method-assign]
    server.run()
