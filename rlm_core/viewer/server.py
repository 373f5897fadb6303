"""The viewer's HTTP server (standard library only, 127.0.0.1): the page, run summaries, log pages, live tail.

Endpoints: ``/`` the page; ``/static/<file>``; ``/api/runs`` the run list; ``/api/page?file=&offset=&max=``
complete lines from a byte offset; ``/api/tail?file=&offset=&wait=`` the same, but waits (long poll)
until the file grows past ``offset``, so a run being written shows up within a fraction of a second.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rlm_core.viewer.logfiles import (
    DEFAULT_PAGE_BYTES,
    LogAccessError,
    LogDirectory,
    Page,
    read_page,
    summarize,
    wait_for_growth,
)

HOST = "127.0.0.1"
STATIC_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "viewer.css": "text/css; charset=utf-8",
    "viewer.js": "text/javascript; charset=utf-8",
}
MAX_TAIL_WAIT = 25.0
EMPTY_HELP = (
    "No trajectory logs here yet. Write some with RLM(logger=RLMLogger(log_dir=...)) in Python, or "
    "'rlm run CONTEXT_FILE -q QUESTION --log-dir DIR' on the command line, then reload."
)


def static_text(name: str) -> str:
    """One of the page's files, read from the installed package."""
    return resources.files("rlm_core.viewer").joinpath("static", name).read_text(encoding="utf-8")


class ViewerServer(ThreadingHTTPServer):
    """Serves one log directory (or one log file); ``url`` is where to point a browser."""

    daemon_threads = True  # long polls must not keep Ctrl-C waiting

    def __init__(self, logs: LogDirectory, port: int = 0) -> None:
        self.logs = logs
        self._summaries: dict[tuple[str, float, int], dict[str, Any]] = {}
        self._summary_lock = threading.Lock()
        super().__init__((HOST, port), _Handler)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"

    def run_list(self) -> dict[str, Any]:
        runs = []
        for path in self.logs.files():
            try:
                stat = path.stat()
                key = (path.name, stat.st_mtime, stat.st_size)
                with self._summary_lock:
                    summary = self._summaries.get(key)
                if summary is None:
                    summary = summarize(path)
                    with self._summary_lock:
                        self._summaries[key] = summary
            except OSError as exc:  # removed or unreadable between listing and reading
                summary = {"file": path.name, "status": "unreadable", "problems": [str(exc)]}
            runs.append(summary)
        return {
            "directory": str(self.logs.root),
            "single_file": self.logs.single_file is not None,
            "runs": runs,
            "help": EMPTY_HELP,
        }

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A page closed or reloaded mid-request is normal here, not an error worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def start_in_background(self) -> threading.Thread:
        """Serve from a daemon thread (tests, ``rlm view``); stop with ``shutdown()`` then ``server_close()``."""
        thread = threading.Thread(target=self.serve_forever, name="rlm-viewer", daemon=True)
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    server: ViewerServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a request line per page load would drown the URL the user needs to see

    def do_GET(self) -> None:
        if not self._host_allowed():
            # A page on another site that renamed itself to 127.0.0.1 (DNS rebinding) must not read logs.
            self._send_json(
                {"error": "unexpected Host header; open the address rlm view printed"}, HTTPStatus.FORBIDDEN
            )
            return
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if url.path in ("/", "/index.html"):
                self._send(static_text("index.html").encode(), STATIC_TYPES["index.html"])
            elif url.path.startswith("/static/") and url.path[8:] in STATIC_TYPES:
                name = url.path[8:]
                self._send(static_text(name).encode(), STATIC_TYPES[name])
            elif url.path == "/api/runs":
                self._send_json(self.server.run_list())
            elif url.path == "/api/page":
                path = self.server.logs.resolve(query.get("file", ""))
                offset = _int(query, "offset", 0)
                self._send_page(read_page(path, offset, _int(query, "max", DEFAULT_PAGE_BYTES)))
            elif url.path == "/api/tail":
                path = self.server.logs.resolve(query.get("file", ""))
                offset = _int(query, "offset", 0)
                wait = min(float(query.get("wait", "10")), MAX_TAIL_WAIT)
                wait_for_growth(path, offset, wait)
                self._send_page(read_page(path, offset, _int(query, "max", DEFAULT_PAGE_BYTES)))
            else:
                self._send_json({"error": f"no such page: {url.path}"}, HTTPStatus.NOT_FOUND)
        except LogAccessError as exc:
            self._send_json({"error": str(exc)}, HTTPStatus.NOT_FOUND)
        except ValueError as exc:
            self._send_json({"error": f"bad request: {exc}"}, HTTPStatus.BAD_REQUEST)
        except ConnectionError:
            pass  # the page went away mid-answer (reload, closed tab): nothing to tell it
        except OSError as exc:  # a log removed or unreadable between listing and reading
            self._send_json({"error": f"cannot read the log: {exc}"}, HTTPStatus.NOT_FOUND)

    def _host_allowed(self) -> bool:
        port = self.server.server_address[1]
        return self.headers.get("Host", "") in (f"{HOST}:{port}", f"localhost:{port}")

    def _send_page(self, page: Page) -> None:
        headers = {
            "X-Offset": str(page.offset),
            "X-Next-Offset": str(page.next_offset),
            "X-Size": str(page.size),
            "X-Complete-Bytes": str(len(page.data)),
        }
        self._send(page.data + page.partial, "application/x-ndjson; charset=utf-8", headers=headers)

    def _send_json(self, value: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(json.dumps(value).encode(), "application/json", status)

    def _send(
        self,
        body: bytes,
        content_type: str,
        status: HTTPStatus = HTTPStatus.OK,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _int(query: dict[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number of bytes, got {raw!r}") from None


def serve(target: str | Path, port: int = 0) -> ViewerServer:
    """A server for ``target`` (a log directory or one log file), bound but not yet serving."""
    return ViewerServer(LogDirectory(Path(target)), port)


@contextmanager
def running(target: str | Path, port: int = 0) -> Iterator[ViewerServer]:
    """A server for ``target`` serving from a background thread until the block ends."""
    server = serve(target, port)
    server.start_in_background()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
