"""One TLS context per process for the SDK clients' HTTP transports.

Building a TLS context loads the CA bundle (about 40 ms), and every SDK client built one of its own,
even for ``http://`` endpoints: every new RLM, child RLM and batch item paid it again. The context
is immutable once built, so the clients of a process share it through the SDK's documented
``http_client=`` argument (its ``DefaultHttpxClient`` / ``DefaultAsyncHttpxClient``, which keep the
SDK's own timeouts, connection limits and redirects).
"""

from __future__ import annotations

import ssl
import threading
from typing import Any

__all__ = ["sdk_http_client", "shared_ssl_context"]

_lock = threading.Lock()
_context: ssl.SSLContext | None = None


def shared_ssl_context() -> ssl.SSLContext:
    """The process's TLS context, built on first use the way the SDKs' HTTP stack builds its own
    (it honours ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``)."""
    global _context
    with _lock:
        if _context is None:
            try:  # the HTTP stack of the SDK releases we support; older ones ship httpx
                import httpx2 as httpx
            except ImportError:  # pragma: no cover
                import httpx  # type: ignore[no-redef]

            _context = httpx.create_ssl_context()
        return _context


def sdk_http_client(sdk: Any, *, asynchronous: bool) -> Any:
    """A new SDK HTTP client (its own connection pool) verifying with the shared TLS context."""
    cls = sdk.DefaultAsyncHttpxClient if asynchronous else sdk.DefaultHttpxClient
    return cls(verify=shared_ssl_context())
