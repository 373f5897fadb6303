"""The openai client's lean transport: one Chat Completions POST over the SDK's own HTTP stack
(``httpx2``), its JSON read straight into the engine's reply fields, without importing ``openai``.

Why: ``import openai`` (its pydantic type modules) was 0.8-1.2 s of every ``rlm run``, and the SDK's
typed response parse and request layers cost about 5 ms of CPU per call, which made a fan-out of
2,048 sub-calls at concurrency 128 CPU-bound (bench/bench_cold_start.py measures both transports).

What the caller sees is what the SDK path gives (tests/test_openai_client.py and the fault-matrix
tests run both transports against the same loopback servers; the constants below are checked
against the installed SDK there):

- retries: ``max_retries`` (default 2) for timeouts, connection errors and the statuses the SDK
  retries (408, 409, 429, >= 500, or whatever ``x-should-retry`` says); a server's ``retry-after-ms``
  / ``retry-after`` (seconds or an HTTP date) is honoured when it is at most two minutes, and a
  longer one means no retry; otherwise 0.5 s doubling to at most 8 s, minus up to 25 % jitter.
- errors: the same exceptions' counterparts (``Wire*Error`` in ``sdk_client``), worded as the SDK
  words them, so ``_translate`` gives the same ProviderError messages and ``retryable`` flags.
- headers: ``Authorization: Bearer <key>``, ``OpenAI-Organization`` / ``OpenAI-Project`` (given or
  from ``OPENAI_ORG_ID`` / ``OPENAI_PROJECT_ID``), then the user's ``default_headers`` and a
  request's ``extra_headers``, which win; the SDK's timeouts, pool limits and redirects.

It never holds the key anywhere but the headers it sends, and its repr names only the URL.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import random
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

from rlm_core.clients.sdk_client import (
    IncompleteReplyError,
    WireConnectionError,
    WireReplyError,
    WireStatusError,
    WireTimeoutError,
)
from rlm_core.redact import redact_text

__all__ = ["DEFAULT_MAX_RETRIES", "AsyncChatHTTP", "ChatHTTP", "SyncChatHTTP"]

# The installed SDK's values (openai/_constants.py); tests compare them with the SDK's own.
DEFAULT_MAX_RETRIES = 2
DEFAULT_TIMEOUT = 600.0  # seconds for a read, write or pool wait ...
DEFAULT_CONNECT_TIMEOUT = 5.0  # ... and for a connection
MAX_CONNECTIONS = 1000
MAX_KEEPALIVE_CONNECTIONS = 100
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER_DELAY = 2 * 60


class ChatHTTP:
    """What the sync and async transports share: the URL, the headers, the retry policy and the
    reply parsing. ``http`` is the pooled ``httpx2`` client (one per client object and event loop)."""

    def __init__(
        self,
        http: Any,
        *,
        base_url: str,
        headers: Mapping[str, str],
        max_retries: int,
        timeout: float | None,
    ) -> None:
        from rlm_core.clients.transports import http_module

        self.http = http
        self._httpx = http_module()
        self.url = base_url.rstrip("/") + "/chat/completions"
        self._headers = dict(headers)
        self.max_retries = max_retries
        self.timeout = self._timeout(timeout)
        # What the SDK treats as "could not connect" (its request_exceptions()).
        self._connection_errors = (self._httpx.RequestError, ssl.SSLError)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={redact_text(self.url)!r})"

    @classmethod
    def pool(cls, asynchronous: bool) -> Any:
        """A new pooled HTTP client with the SDK's defaults and the process's TLS context."""
        from rlm_core.clients.transports import http_module, shared_ssl_context

        httpx = http_module()
        client_cls = httpx.AsyncClient if asynchronous else httpx.Client
        return client_cls(
            verify=shared_ssl_context(),
            timeout=httpx.Timeout(DEFAULT_TIMEOUT, connect=DEFAULT_CONNECT_TIMEOUT),
            limits=httpx.Limits(
                max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE_CONNECTIONS
            ),
            follow_redirects=True,
        )

    def _timeout(self, timeout: float | None) -> Any:
        # The SDK applies a number to every phase (connect, read, write, pool), as httpx does.
        if timeout is None:
            return self._httpx.Timeout(DEFAULT_TIMEOUT, connect=DEFAULT_CONNECT_TIMEOUT)
        return timeout if isinstance(timeout, self._httpx.Timeout) else self._httpx.Timeout(timeout)

    def _request(self, body: Mapping[str, Any], options: Mapping[str, Any], retries_taken: int) -> Any:
        headers = self._headers
        if options.get("headers"):
            headers = {**headers, **options["headers"]}
        timeout = options.get("timeout")
        return self.http.build_request(
            "POST",
            self.url,
            content=_dumps(body),
            headers=headers,
            params=options.get("params"),
            timeout=self.timeout if timeout is None else self._timeout(timeout),
        )

    # -- the SDK's retry policy (openai/_base_client.py) -------------------------------------

    def _retry_status(self, response: Any) -> bool:
        retry_after = _retry_after(response.headers)
        if retry_after is not None and math.isfinite(retry_after) and retry_after > MAX_RETRY_AFTER_DELAY:
            return False
        said = response.headers.get("x-should-retry")
        if said == "true":
            return True
        if said == "false":
            return False
        status = int(response.status_code)
        return status in (408, 409, 429) or status >= 500

    def _retry_delay(self, retries_taken: int, headers: Any) -> float:
        retry_after = _retry_after(headers) if headers is not None else None
        if (
            retry_after is not None
            and math.isfinite(retry_after)
            and 0 < retry_after <= MAX_RETRY_AFTER_DELAY
        ):
            return retry_after
        delay = min(INITIAL_RETRY_DELAY * pow(2.0, min(retries_taken, 1000)), MAX_RETRY_DELAY)
        return max(delay * (1 - 0.25 * random.random()), 0.0)

    # -- replies -----------------------------------------------------------------------------

    @staticmethod
    def _status_error(response: Any, content: bytes) -> WireStatusError:
        # Worded as the SDK's _make_status_error_from_response words it.
        message = f"Error code: {response.status_code}"
        try:
            body = json.loads(content)
        except ValueError:
            body = None
        error = body.get("error", body) if isinstance(body, dict) else None
        said = error.get("message") if isinstance(error, dict) else None
        if isinstance(said, str) and said:
            message += f" - {said}"
        return WireStatusError(message, int(response.status_code))

    @staticmethod
    def _completion(content: bytes) -> dict[str, Any]:
        data = json.loads(content)
        if not isinstance(data, dict):
            raise IncompleteReplyError(f"the reply is a JSON {type(data).__name__}, not an object")
        from rlm_core.clients.openai_client import _completion_info

        return _completion_info(data)


class SyncChatHTTP(ChatHTTP):
    """The transport for ``complete()``: a sync ``httpx2.Client`` pool."""

    def post(self, body: Mapping[str, Any], options: Mapping[str, Any], stream: bool) -> dict[str, Any]:
        """One Chat Completions call with the SDK's retries: the reply's fields for LMResponse."""
        for taken in range(self.max_retries + 1):
            remaining = self.max_retries - taken
            request = self._request(body, options, taken)
            try:
                response = self.http.send(request, stream=stream)
            except self._httpx.TimeoutException as exc:
                if remaining > 0:
                    time.sleep(self._retry_delay(taken, None))
                    continue
                raise WireTimeoutError("the request timed out") from exc
            except self._connection_errors as exc:
                if remaining > 0:
                    time.sleep(self._retry_delay(taken, None))
                    continue
                raise WireConnectionError("the connection failed") from exc
            try:
                if not 200 <= response.status_code < 300:
                    if remaining > 0 and self._retry_status(response):
                        time.sleep(self._retry_delay(taken, response.headers))
                        continue
                    raise self._status_error(response, self._read(response))
                if not stream:
                    return self._completion(response.content)
                return self._collect(_sse_events(self._lines(response)))
            finally:
                response.close()
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _read(self, response: Any) -> bytes:
        try:
            return bytes(response.read())
        except (self._httpx.TimeoutException, *self._connection_errors):
            return b""

    def _lines(self, response: Any) -> Iterator[str]:
        # As the SDK's Stream does: a failure mid-stream is a timeout or connection error, not retried.
        try:
            yield from response.iter_lines()
        except self._httpx.TimeoutException as exc:
            raise WireTimeoutError("the stream timed out") from exc
        except self._connection_errors as exc:
            raise WireConnectionError("the stream broke off") from exc

    @staticmethod
    def _collect(events: Iterable[Any]) -> dict[str, Any]:
        from rlm_core.clients.openai_client import _StreamCollector

        collector = _StreamCollector()
        for event in events:
            collector.add(event)
        return collector.info()

    def close(self) -> None:
        self.http.close()


class AsyncChatHTTP(ChatHTTP):
    """The transport for ``acomplete()``: an ``httpx2.AsyncClient`` pool bound to one event loop."""

    async def post(self, body: Mapping[str, Any], options: Mapping[str, Any], stream: bool) -> dict[str, Any]:
        """One Chat Completions call with the SDK's retries: the reply's fields for LMResponse."""
        for taken in range(self.max_retries + 1):
            remaining = self.max_retries - taken
            request = self._request(body, options, taken)
            try:
                response = await self.http.send(request, stream=stream)
            except self._httpx.TimeoutException as exc:
                if remaining > 0:
                    await asyncio.sleep(self._retry_delay(taken, None))
                    continue
                raise WireTimeoutError("the request timed out") from exc
            except self._connection_errors as exc:
                if remaining > 0:
                    await asyncio.sleep(self._retry_delay(taken, None))
                    continue
                raise WireConnectionError("the connection failed") from exc
            try:
                if not 200 <= response.status_code < 300:
                    if remaining > 0 and self._retry_status(response):
                        await asyncio.sleep(self._retry_delay(taken, response.headers))
                        continue
                    raise self._status_error(response, await self._read(response))
                if not stream:
                    return self._completion(response.content)
                from rlm_core.clients.openai_client import _StreamCollector

                collector = _StreamCollector()
                async for event in _async_sse_events(self._lines(response)):
                    collector.add(event)
                return collector.info()
            finally:
                await response.aclose()
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _read(self, response: Any) -> bytes:
        try:
            return bytes(await response.aread())
        except (self._httpx.TimeoutException, *self._connection_errors):
            return b""

    async def _lines(self, response: Any) -> AsyncIterator[str]:
        try:
            async for line in response.aiter_lines():
                yield line
        except self._httpx.TimeoutException as exc:
            raise WireTimeoutError("the stream timed out") from exc
        except self._connection_errors as exc:
            raise WireConnectionError("the stream broke off") from exc

    async def close(self) -> None:
        await self.http.aclose()


# -- helpers ---------------------------------------------------------------------------------


def _dumps(body: Mapping[str, Any]) -> bytes:
    # The SDK's encoding: compact, UTF-8, non-ASCII kept as is.
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _retry_after(headers: Any) -> float | None:
    """Seconds a server asked to wait (the SDK's _parse_retry_after_header), or None."""
    for name, divisor in (("retry-after-ms", 1000), ("retry-after", 1)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            delay = float(value)
        except ValueError:
            continue
        if delay == math.inf and value.strip().lower() not in ("inf", "+inf", "infinity", "+infinity"):
            return MAX_RETRY_AFTER_DELAY + 1  # an overflowing number: too long to wait, so no retry
        return delay / divisor
    try:
        date = email.utils.parsedate_tz(headers.get("retry-after"))
        if date is None:
            return None
        return float(email.utils.mktime_tz(date) - time.time())
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _event(data: list[str]) -> Any:
    """One server-sent event's JSON; a provider's error event becomes WireReplyError (as the SDK)."""
    parsed = json.loads("\n".join(data))
    if isinstance(parsed, dict) and parsed.get("error"):
        error = parsed["error"]
        message = error.get("message") if isinstance(error, dict) else None
        raise WireReplyError(
            message if isinstance(message, str) and message else "An error occurred during streaming"
        )
    return parsed


def _sse_events(lines: Iterable[str]) -> Iterator[Any]:
    """The JSON payloads of a ``text/event-stream`` up to ``[DONE]``."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                if data[0].startswith("[DONE]"):
                    return
                yield _event(data)
                data = []
            continue
        if line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])
    if data and not data[0].startswith("[DONE]"):
        yield _event(data)


async def _async_sse_events(lines: AsyncIterator[str]) -> AsyncIterator[Any]:
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                if data[0].startswith("[DONE]"):
                    return
                yield _event(data)
                data = []
            continue
        if line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])
    if data and not data[0].startswith("[DONE]"):
        yield _event(data)
