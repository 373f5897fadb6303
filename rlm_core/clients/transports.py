"""One TLS context per process for the clients' HTTP transports, and the HTTP stack they use.

Building a TLS context loads the CA bundle (about 40 ms), and every SDK client built one of its own,
even for ``http://`` endpoints: every new RLM, child RLM and batch item paid it again. The context
is immutable once built, so the clients of a process share it through the SDK's documented
``http_client=`` argument (its ``DefaultHttpxClient`` / ``DefaultAsyncHttpxClient``, which keep the
SDK's own timeouts, connection limits and redirects). The openai client's lean transport
(``rlm_core.clients.openai_http``) builds its pools from the same HTTP stack and the same context.
"""

from __future__ import annotations

import ssl
import threading
from typing import Any

__all__ = ["http_module", "sdk_http_client", "shared_ssl_context"]

_lock = threading.Lock()
_context: ssl.SSLContext | None = None


def shared_ssl_context() -> ssl.SSLContext:
    """The process's TLS context, built on first use the way the SDKs' HTTP stack builds its own
    (it honours ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``)."""
    global _context
    with _lock:
        if _context is None:
            _context = http_module().create_ssl_context()
        return _context


def http_module() -> Any:
    """The HTTP client library of the installed SDKs: ``httpx2`` (the SDK releases we support), else
    ``httpx`` (older releases ship that). Both have the same API; one process uses one of them, so
    its exception classes are the ones the SDKs and the lean transport see."""
    try:
        import httpx2

        return httpx2
    except ImportError:  # pragma: no cover - an SDK release from before httpx2
        import httpx

        return httpx


def sdk_http_client(sdk: Any, *, asynchronous: bool) -> Any:
    """A new SDK HTTP client (its own connection pool) verifying with the shared TLS context."""
    cls = sdk.DefaultAsyncHttpxClient if asynchronous else sdk.DefaultHttpxClient
    return cls(verify=shared_ssl_context())
