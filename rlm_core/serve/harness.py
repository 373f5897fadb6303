"""``ServerThread``: an ``rlm serve`` service on 127.0.0.1 in a background thread, for tests and
benchmarks (``stop()`` behaves as SIGTERM does: a grace period, then cancellation)."""

from __future__ import annotations

import asyncio
import signal
import threading
from typing import Any

import attrs
import uvicorn

from rlm_core.serve.app import Service, build_service, create_app
from rlm_core.serve.config import ServeConfig
from rlm_core.serve.keys import KeyRing
from rlm_core.serve.server import _Server


class ServerThread:
    def __init__(self, config: ServeConfig, keys: KeyRing | None = None) -> None:
        if config.server.host not in ("127.0.0.1", "localhost"):
            config = attrs.evolve(config, server=attrs.evolve(config.server, host="127.0.0.1"))
        self.service: Service = build_service(config, keys or KeyRing([]))
        uv_config = uvicorn.Config(
            create_app(self.service),
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=int(config.server.grace_seconds + 6),
        )
        self.server = _Server(uv_config, self.service)
        self._thread = threading.Thread(target=self._run, name="rlm-serve-test", daemon=True)
        self._failure: BaseException | None = None
        self.port = 0  # known once started

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve())
        except BaseException as exc:  # reported by start()/stop()
            self._failure = exc

    def start(self, timeout: float = 30.0) -> ServerThread:
        self._thread.start()
        ready = threading.Event()

        def check() -> bool:
            return self.server.started or not self._thread.is_alive()

        while not check():
            ready.wait(0.01)
            timeout -= 0.01
            if timeout <= 0:
                raise TimeoutError("the server did not start in time")
        if self._failure is not None or not self.server.started:
            raise RuntimeError(f"the server did not start: {self._failure!r}")
        self.port = int(self.server.servers[0].sockets[0].getsockname()[1])
        return self

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def begin_stop(self) -> None:
        """What SIGTERM does: stop accepting, give completions the grace period, then cancel them."""
        self.server.handle_exit(signal.SIGTERM, None)

    def stop(self, timeout: float = 60.0) -> None:
        if self._thread.is_alive():
            self.begin_stop()
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError("the server did not stop in time")
        if self._failure is not None and not isinstance(self._failure, (KeyboardInterrupt, SystemExit)):
            raise RuntimeError(f"the server failed: {self._failure!r}")

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
