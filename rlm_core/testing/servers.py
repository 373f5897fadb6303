"""Loopback OpenAI- and Anthropic-compatible HTTP servers for tests and benchmarks.

One stdlib ``ThreadingHTTPServer`` on 127.0.0.1 serves ``POST /v1/chat/completions``,
``POST /v1/messages`` and ``GET /v1/models`` in the wire format the real SDKs parse (plain and SSE),
counts tokens with ``rlm_core.testing.tokens`` and can inject faults. Run it standalone with
``python -m rlm_core.testing.servers --port 0 --latency 0.05``: it prints its base URL first.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import attrs

from rlm_core.errors import ConfigurationError
from rlm_core.testing import wire
from rlm_core.testing.http import LoopbackHandler, LoopbackHTTPServer
from rlm_core.testing.tokens import count_message_tokens, count_tokens, truncate_to_tokens

__all__ = ["AnthropicServer", "LoopbackLLMServer", "ModelTotals", "OpenAIServer", "main"]

ReplyFn = Callable[[dict[str, Any]], str]
# (request body, reply text) -> the first token's alternatives as (token, log-probability)
TokenScoresFn = Callable[[dict[str, Any], str], Sequence[tuple[str, float]]]
Replies = Sequence[str] | ReplyFn | None

DEFAULT_MODEL = "loopback-model"
DEFAULT_REPLY = "Hello from the loopback server."
# Azure OpenAI puts the deployment in the path (the model name travels there, not in the body).
_AZURE_CHAT = re.compile(r"/openai/deployments/[^/]+/chat/completions")


@attrs.define
class ModelTotals:
    """What the server counted for one model name."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


@attrs.define(frozen=True)
class _Fault:
    kind: Literal["status", "malformed", "drop", "slow"]
    status: int = 500
    body: bytes | None = None
    delay: float = 0.0


class LoopbackLLMServer:
    """An OpenAI- and Anthropic-compatible server on 127.0.0.1 with scripted replies.

    ``replies`` is a list of strings consumed in order, one per successful chat request; once they
    run out the last one repeats (``when_exhausted="repeat"``, the default) or the server answers
    HTTP 400 naming the exhausted script (``when_exhausted="error"``). It may also be a callable
    ``reply(request) -> str`` receiving the parsed JSON body plus ``"path"`` (called from handler
    threads, concurrently). ``None`` or ``[]`` replies with a fixed greeting.

    Replies are cut to ``max_tokens``/``max_completion_tokens`` (at most ``4 * max_tokens`` bytes)
    with finish reason ``length`` / stop reason ``max_tokens``. ``api_key`` makes requests fail
    with 401 unless ``Authorization: Bearer``, ``x-api-key`` or ``api-key`` carries it. ``latency``
    seconds are slept per request. ``omit_usage=True`` leaves ``usage`` out of every reply (plain
    and streamed), as some providers and proxies do; the server still counts the tokens it served
    (``model_totals``), so a test can compare a budget with what was really spent. Injected
    failures carry ``retry-after-ms: retry_after_ms`` so
    the SDKs retry at once instead of backing off (set ``None`` to exercise their backoff).
    A Chat Completions request with ``logprobs`` gets the first token's alternatives from
    ``token_scores(body, text)`` (a list of ``(token, logprob)``); without it, the reply's first
    word with log-probability 0.

    Use as a context manager or call ``start()``/``stop()``; every attribute above may be changed
    while it runs.
    """

    def __init__(
        self,
        replies: Replies = None,
        *,
        latency: float = 0.0,
        api_key: str | None = None,
        when_exhausted: Literal["repeat", "error"] = "repeat",
        retry_after_ms: float | None = 1.0,
        omit_usage: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigurationError(
                f"LoopbackLLMServer binds loopback interfaces only, got host={host!r}; use 127.0.0.1."
            )
        self.latency = latency
        self.api_key = api_key
        self.when_exhausted = when_exhausted
        self.retry_after_ms = retry_after_ms
        self.omit_usage = omit_usage
        self.token_scores: TokenScoresFn | None = None
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._ids = itertools.count(1)
        self._httpd: LoopbackHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._faults: list[_Fault] = []
        self._replies: list[str] = []
        self._reply_fn: ReplyFn | None = None
        self._reply_index = 0
        self._requests: list[dict[str, Any]] = []
        self._headers: list[dict[str, str]] = []
        self._models: dict[str, ModelTotals] = {}
        self.set_replies(replies)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LoopbackLLMServer:
        """Bind the port and serve from a daemon thread. Idempotent."""
        if self._httpd is not None:
            return self
        self._stop_event.clear()
        httpd = LoopbackHTTPServer((self._host, self._port), LoopbackHandler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="rlm-loopback", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; sleeping handlers (latency, slow faults) wake up."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stop_event.set()
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join()
        self._httpd = None
        self._thread = None

    def __enter__(self) -> LoopbackLLMServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.base_url if self._httpd is not None else "stopped"
        return f"<{type(self).__name__} {state}>"

    # -- addresses ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise ConfigurationError("The loopback server is not running: call start() or use `with`.")
        return int(self._httpd.server_address[1])

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT`` (what the anthropic SDK takes as ``base_url``)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL, ``http://127.0.0.1:PORT/v1``."""
        return f"{self.root_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.root_url

    def connection(self, api_key: str = "test") -> dict[str, Any]:
        """An openai client's keywords for this server, without retries: an injected fault shows at once."""
        return {"base_url": self.base_url, "api_key": api_key, "max_retries": 0}

    def rlm_tiers(self, root: str, sub: str) -> dict[str, Any]:
        """``RLM(**server.rlm_tiers(root, sub), ...)``: a root and a sub tier that are two models of
        this server, over the openai SDK."""
        return {
            "backend": "openai",
            "backend_kwargs": {"model_name": root, **self.connection()},
            "other_backends": ["openai"],
            "other_backend_kwargs": [{"model_name": sub, **self.connection()}],
        }

    # -- scripting ---------------------------------------------------------------------------

    def set_replies(self, replies: Replies) -> None:
        """Replace the reply script (see the class docstring) and rewind it."""
        with self._lock:
            if callable(replies):
                self._reply_fn, self._replies = replies, []
            elif isinstance(replies, str):
                raise ConfigurationError(
                    "replies must be a list of strings or a callable, got one string; wrap it: [reply]."
                )
            else:
                self._reply_fn, self._replies = None, list(replies or [])
            self._reply_index = 0

    def fail_next(
        self, n: int = 1, status: int = 500, body: str | bytes | Mapping[str, Any] | None = None
    ) -> None:
        """Answer the next ``n`` chat requests with HTTP ``status`` (body: provider-style error)."""
        raw = json.dumps(body).encode() if isinstance(body, Mapping) else body
        raw = raw.encode("utf-8") if isinstance(raw, str) else raw
        self._add_faults(n, _Fault("status", status=status, body=raw))

    def rate_limit_next(self, n: int = 1, retry_after: float = 0.01) -> None:
        """Answer the next ``n`` chat requests with HTTP 429 and a ``Retry-After`` header (seconds)."""
        body = wire.openai_error("loopback fault: rate limited, retry later", "rate_limit_error")
        self._add_faults(n, _Fault("status", status=429, body=json.dumps(body).encode(), delay=retry_after))

    def context_length_next(self, n: int = 1) -> None:
        """Answer the next ``n`` chat requests with HTTP 400 ``context_length_exceeded``."""
        body = wire.openai_error(
            "This model's maximum context length is 8192 tokens.", "invalid_request_error"
        )
        body["error"]["code"] = "context_length_exceeded"
        self.fail_next(n, 400, body)

    def malformed_next(self, n: int = 1) -> None:
        """Answer the next ``n`` chat requests with HTTP 200 and a body that is not valid JSON."""
        self._add_faults(n, _Fault("malformed"))

    def drop_next(self, n: int = 1) -> None:
        """Close the connection of the next ``n`` chat requests without any response."""
        self._add_faults(n, _Fault("drop"))

    def slow_next(self, n: int = 1, delay: float = 5.0) -> None:
        """Delay the next ``n`` replies by ``delay`` more seconds (to trigger client timeouts)."""
        self._add_faults(n, _Fault("slow", delay=delay))

    def _add_faults(self, n: int, fault: _Fault) -> None:
        with self._lock:
            self._faults.extend([fault] * n)

    def reset(self) -> None:
        """Forget recorded requests, counters and pending faults, and rewind the reply script."""
        with self._lock:
            self._faults.clear()
            self._requests.clear()
            self._headers.clear()
            self._models.clear()
            self._reply_index = 0

    # -- what the server saw -----------------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every received chat request body (plus ``"path"``), failed ones included, in order."""
        with self._lock:
            return list(self._requests)

    @property
    def request_headers(self) -> list[dict[str, str]]:
        """The headers of each entry of ``requests`` (lower-case names)."""
        with self._lock:
            return list(self._headers)

    @property
    def model_totals(self) -> dict[str, ModelTotals]:
        """Successful requests and tokens per model name."""
        with self._lock:
            return {name: attrs.evolve(totals) for name, totals in self._models.items()}

    @property
    def total_input_tokens(self) -> int:
        with self._lock:
            return sum(t.input_tokens for t in self._models.values())

    @property
    def total_output_tokens(self) -> int:
        with self._lock:
            return sum(t.output_tokens for t in self._models.values())

    # -- request handling --------------------------------------------------------------------

    def _handle_get(self, handler: LoopbackHandler) -> None:
        path = handler.path.split("?", 1)[0].rstrip("/")
        if path not in ("/v1/models", "/models"):
            handler.send_json(404, wire.openai_error(f"no route GET {path}", "not_found_error"))
            return
        with self._lock:
            names = sorted({DEFAULT_MODEL, *self._models})
        handler.send_json(
            200,
            {
                "object": "list",
                "data": [{"id": n, "object": "model", "created": 0, "owned_by": "loopback"} for n in names],
            },
        )

    def _handle_post(self, handler: LoopbackHandler) -> None:
        path = handler.path.split("?", 1)[0].rstrip("/")
        api: Literal["openai", "anthropic"]
        if path in ("/v1/chat/completions", "/chat/completions") or _AZURE_CHAT.fullmatch(path):
            api = "openai"
        elif path == "/v1/messages":
            api = "anthropic"
        else:
            handler.send_json(404, wire.openai_error(f"no route POST {path}", "not_found_error"))
            return
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
        except ValueError as exc:
            self._send_error(
                handler, api, 400, f"request body is not valid JSON: {exc}", "invalid_request_error"
            )
            return
        body["path"] = path
        headers = {name.lower(): value for name, value in handler.headers.items()}
        with self._lock:
            self._requests.append(body)
            self._headers.append(headers)
            fault = self._faults.pop(0) if self._faults else None

        if self.api_key is not None and not self._authorized(headers):
            self._send_error(
                handler,
                api,
                401,
                "invalid API key: the loopback server expects another key",
                "authentication_error",
            )
            return
        if fault is not None and fault.kind != "slow":
            self._send_fault(handler, api, fault)
            return
        delay = self.latency + (fault.delay if fault is not None else 0.0)
        if delay > 0 and self._stop_event.wait(delay):
            handler.close_connection = True
            return
        self._reply(handler, api, body)

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        # OpenAI sends a bearer token, Anthropic x-api-key, Azure OpenAI api-key.
        bearer = headers.get("authorization", "")
        return (
            self.api_key in (headers.get("x-api-key"), headers.get("api-key"))
            or bearer == f"Bearer {self.api_key}"
        )

    def _send_fault(self, handler: LoopbackHandler, api: str, fault: _Fault) -> None:
        if fault.kind == "drop":
            handler.close_connection = True
            return
        if fault.kind == "malformed":
            handler.send_bytes(200, b'{"id": "broken", "choices": [', "application/json")
            return
        headers = {} if self.retry_after_ms is None else {"retry-after-ms": f"{self.retry_after_ms:g}"}
        if fault.status == 429 and fault.delay:  # rate_limit_next: the standard header, in seconds
            headers = {"retry-after": f"{fault.delay:g}"}
        if fault.body is not None:
            handler.send_bytes(fault.status, fault.body, "application/json", headers)
        else:
            message = f"loopback fault: injected HTTP {fault.status}"
            self._send_error(handler, api, fault.status, message, "api_error", headers)

    def _send_error(
        self,
        handler: LoopbackHandler,
        api: str,
        status: int,
        message: str,
        kind: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        payload = (
            wire.anthropic_error(message, kind) if api == "anthropic" else wire.openai_error(message, kind)
        )
        handler.send_json(status, payload, headers)

    def _next_reply(self, body: dict[str, Any]) -> str | None:
        if self._reply_fn is not None:
            return str(self._reply_fn(body))
        with self._lock:
            if not self._replies:
                return DEFAULT_REPLY
            if self._reply_index < len(self._replies):
                reply = self._replies[self._reply_index]
                self._reply_index += 1
                return reply
            return self._replies[-1] if self.when_exhausted == "repeat" else None

    def _reply(self, handler: LoopbackHandler, api: str, body: dict[str, Any]) -> None:
        reply = self._next_reply(body)
        if reply is None:
            message = (
                f"loopback reply script exhausted: all {len(self._replies)} scripted replies were used; "
                "script more replies or use when_exhausted='repeat'."
            )
            self._send_error(handler, api, 400, message, "invalid_request_error", {"x-should-retry": "false"})
            return
        model = str(body.get("model") or DEFAULT_MODEL)
        messages = list(body.get("messages") or [])
        if api == "anthropic":
            max_tokens = body.get("max_tokens")
            if body.get("system"):
                messages.insert(0, {"role": "system", "content": body["system"]})
        else:
            max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        text, truncated = truncate_to_tokens(reply, max_tokens if isinstance(max_tokens, int) else None)
        input_tokens = count_message_tokens(messages)
        output_tokens = count_tokens(text)
        with self._lock:
            totals = self._models.setdefault(model, ModelTotals())
            totals.requests += 1
            totals.input_tokens += input_tokens
            totals.output_tokens += output_tokens
        alternatives = None
        if api == "openai" and body.get("logprobs"):
            scores = self.token_scores
            alternatives = (
                list(scores(body, text)) if scores is not None else [((text.split() or [""])[0], 0.0)]
            )
        content, content_type = wire.reply(
            api,
            body,
            next(self._ids),
            model,
            text,
            truncated,
            (input_tokens, output_tokens),
            self.omit_usage,
            alternatives,
        )
        handler.send_bytes(200, content, content_type)


class OpenAIServer(LoopbackLLMServer):
    """The loopback server, named for tests of OpenAI-style clients (use ``.base_url``)."""


class AnthropicServer(LoopbackLLMServer):
    """The loopback server, named for tests of Anthropic-style clients (use ``.anthropic_base_url``)."""


# -- standalone process ----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until killed; the first stdout line is the OpenAI-style base URL."""
    parser = argparse.ArgumentParser(
        prog="python -m rlm_core.testing.servers",
        description="Loopback OpenAI/Anthropic-compatible server (127.0.0.1 only) for tests and benchmarks.",
    )
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: any free port)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds slept per request")
    parser.add_argument("--reply", action="append", default=None, help="a scripted reply (repeatable)")
    parser.add_argument("--api-key", default=None, help="reject requests carrying another key with 401")
    parser.add_argument("--omit-usage", action="store_true", help="leave usage out of every reply")
    args = parser.parse_args(argv)
    server = LoopbackLLMServer(
        args.reply, latency=args.latency, api_key=args.api_key, port=args.port, omit_usage=args.omit_usage
    )
    server.start()
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
