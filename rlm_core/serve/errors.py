"""``ApiError``: a failure the service reports as an OpenAI-shaped error body with its HTTP status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rlm_core.redact import redact_text


class ApiError(Exception):
    """An error response: ``{"error": {"message", "type", "param", "code"}}`` with ``status``.
    The message is redacted, so a key or URL credential in it never reaches a client."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        *,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = redact_text(message)
        self.kind = kind
        self.code = code
        self.param = param
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        return {"error": error, **self.extra}


class WorkerFailed(Exception):
    """A completion's Ray worker failed outside the run (the actor died, or the profile's RLM could
    not be built there): what it spent is not known (``rlm serve --ray``)."""
