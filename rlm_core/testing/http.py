"""The HTTP plumbing of the loopback servers: a threading server on 127.0.0.1 that stays quiet
about dropped connections, and a keep-alive request handler that hands each request to its owner."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LoopbackHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 refuses connections under the 256-concurrent-call benchmark.
    request_queue_size = 1024
    owner: Any  # the LoopbackLLMServer that answers: it has _handle_get and _handle_post

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or drop their connection are expected in fault tests: stay quiet.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, OSError)):
            return
        super().handle_error(request, client_address)


class LoopbackHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDKs reuse pooled connections
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: LoopbackHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        self.server.owner._handle_get(self)

    def do_POST(self) -> None:
        self.server.owner._handle_post(self)

    def send_bytes(
        self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(payload).encode("utf-8"), "application/json", headers)
