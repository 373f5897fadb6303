"""The shared base of the built-in SDK clients: settings, API keys, lazy SDK objects per event loop,
and the mapping of SDK errors to ProviderError with a message that says what to change."""

from __future__ import annotations

import abc
import asyncio
import functools
import inspect
import json
import os
import re
import sys
import threading
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, ClassVar

from rlm_core.clients.base import BaseClient, Price
from rlm_core.errors import ConfigurationError, ProviderError, RLMError
from rlm_core.redact import Secret, redact_text, safe_repr
from rlm_core.types import LMRequest, LMResponse, TokenUsage

__all__ = [
    "IncompleteReplyError",
    "SDKChatClient",
    "WireConnectionError",
    "WireReplyError",
    "WireStatusError",
    "WireTimeoutError",
    "fit_signature",
]

# Keys of backend_kwargs that would clash with what the client itself sends.
_RESERVED_PARAMS = frozenset({"model", "messages", "stream", "stream_options", "system"})
# Shapes of provider API keys, scrubbed from provider error text that might echo them.
_KEY_SHAPES = re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-*.]{8,}|\bAIza[0-9A-Za-z_\-]{20,}")
_MAX_PROVIDER_TEXT = 400


class IncompleteReplyError(RLMError):
    """A reply or stream ended before it held a message; clients turn it into ProviderError."""


# Failures of a client's own HTTP path (one that does not go through the SDK, such as the openai
# client's lean transport). Each mirrors the SDK exception named in its docstring, so that
# ``_translate`` gives the caller the same ProviderError message and ``retryable`` flag either way.


class WireStatusError(RLMError):
    """An HTTP error status after the retries (the SDK's ``APIStatusError``). ``message`` is worded
    as the SDK words it: ``Error code: <status>`` and `` - <error.message>`` when the body has one."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


class WireTimeoutError(RLMError):
    """No reply within the timeout after the retries (the SDK's ``APITimeoutError``)."""


class WireConnectionError(RLMError):
    """The connection failed after the retries, or broke mid-stream (the SDK's ``APIConnectionError``);
    the transport's own exception is its ``__cause__``."""


class WireReplyError(RLMError):
    """The provider reported an error inside a streamed reply (the SDK's ``APIError``)."""


class SDKChatClient(BaseClient):
    """Shared base of the built-in clients over the official ``openai`` and ``anthropic`` SDKs.

    Subclasses name their SDK and key variable, build SDK client objects, and map an ``LMRequest``
    to one ``create()`` call. The SDK's own retries are the only retry layer; whatever still fails
    becomes ``rlm_core.errors.ProviderError`` with a message that says what to change.
    """

    backend = ""
    api_key_envs: ClassVar[tuple[str, ...]] = ()
    api_key_required: ClassVar[bool] = True
    placeholder_api_key: ClassVar[str | None] = None  # sent when no key is required and none is set
    default_base_url: ClassVar[str | None] = None
    base_url_env: ClassVar[str | None] = None
    _sdk_module_name: ClassVar[str] = ""
    _sdk_base_error: ClassVar[str] = ""

    def __init__(
        self,
        model_name: str | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        default_headers: Mapping[str, str] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        context_window: int | None = None,
        price: Price | Sequence[float] | None = None,
        stream: bool = False,
        client_kwargs: Mapping[str, Any] | None = None,
        **extra_params: Any,
    ) -> None:
        cls = type(self).__name__
        if not model_name or not isinstance(model_name, str):
            raise ConfigurationError(
                f"{cls} needs a model: pass backend_kwargs={{'model_name': ...}} "
                f"(got model_name={model_name!r})."
            )
        self.model_name = model_name
        reserved = sorted(_RESERVED_PARAMS & extra_params.keys())
        if reserved:
            raise ConfigurationError(
                f"{cls} sets {', '.join(reserved)} itself; remove them from backend_kwargs "
                "(the model goes in model_name, streaming is chosen with stream=True)."
            )
        self.timeout = _positive(cls, "timeout", timeout, float)
        self.max_retries = _non_negative_int(cls, "max_retries", max_retries)
        self.max_tokens = _positive(cls, "max_tokens", max_tokens, int)
        self.context_window = _positive(cls, "context_window", context_window, int)
        self.temperature = temperature
        # A given price is used as is; otherwise it is looked up on first use (the price database
        # takes a moment to load, and most runs never set max_cost).
        self._price: Price | None = _as_price(cls, price) if price is not None else None
        self._price_known = price is not None
        self.stream = bool(stream)
        self.default_headers = dict(default_headers or {})
        self.client_kwargs = dict(client_kwargs or {})
        self.extra_params = extra_params
        self.base_url = base_url or (os.environ.get(self.base_url_env) if self.base_url_env else None)
        self.base_url = self.base_url or self.default_base_url
        self._api_key = self._resolve_api_key(api_key)
        self._lock = threading.Lock()
        self._sync_client: Any = None
        self._async_clients: dict[asyncio.AbstractEventLoop, tuple[Any, AsyncGenerator[None, None]]] = {}

    # -- configuration -----------------------------------------------------------------------

    def _resolve_api_key(self, api_key: str | None) -> Secret | None:
        if api_key:
            return Secret(api_key)
        for name in self.api_key_envs:
            value = os.environ.get(name)
            if value:
                return Secret(value)
        if not self.api_key_required:
            return Secret(self.placeholder_api_key) if self.placeholder_api_key else None
        raise ConfigurationError(
            f"{type(self).__name__} for model {self.model_name!r} found no API key: set the "
            f"{self._key_hint()} environment variable or pass backend_kwargs={{'api_key': ...}}."
        )

    def _key_hint(self) -> str:
        return " or ".join(self.api_key_envs) or "provider's API key"

    @property
    def price(self) -> Price | None:
        """USD per million tokens: the one given, else the model's entry in the price database."""
        if not self._price_known:
            self._price = _lookup_price(self.model_name)
            self._price_known = True
        return self._price

    @price.setter
    def price(self, value: Price | None) -> None:
        self._price, self._price_known = value, True

    def __repr__(self) -> str:
        # getattr: a constructor that failed half-way must still describe itself in a traceback
        url = getattr(self, "base_url", None)
        base = f", base_url={redact_text(url)!r}" if url else ""
        model, stream = getattr(self, "model_name", None), getattr(self, "stream", False)
        return f"{type(self).__name__}(model_name={model!r}{base}, stream={stream})"

    __str__ = __repr__

    def _sdk(self) -> Any:
        import importlib

        return importlib.import_module(self._sdk_module_name)

    def sdk_client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the SDK client constructor (they include the API key: never log them)."""
        kwargs: dict[str, Any] = {}
        if self._api_key is not None:
            kwargs["api_key"] = self._api_key.reveal()
        if self.base_url:
            kwargs["base_url"] = self.base_url
        if self.timeout is not None:
            kwargs["timeout"] = self.timeout
        if self.max_retries is not None:
            kwargs["max_retries"] = self.max_retries
        if self.default_headers:
            kwargs["default_headers"] = dict(self.default_headers)
        kwargs.update(self.client_kwargs)
        return kwargs

    @abc.abstractmethod
    def _sdk_classes(self) -> tuple[type[Any], type[Any]]:
        """The SDK's (sync, async) client classes."""

    @abc.abstractmethod
    def _call(self, client: Any, request: LMRequest) -> dict[str, Any]:
        """Make the call with a sync SDK client; return ``text``, ``usage``, ``model``, ``finish_reason``."""

    @abc.abstractmethod
    async def _acall(self, client: Any, request: LMRequest) -> dict[str, Any]:
        """Make the call with an async SDK client (same result as ``_call``)."""

    # -- SDK clients, created on first use and reused ----------------------------------------

    def _get_sync_client(self) -> Any:
        with self._lock:
            if self._sync_client is None:
                self._sync_client = self._new_client(asynchronous=False)
            return self._sync_client

    async def _get_async_client(self) -> Any:
        # An async SDK client's connection pool belongs to one event loop, so each loop gets its
        # own. A suspended async generator closes it: asyncio.run() (and pytest-asyncio) finalise
        # pending async generators before closing their loop, so the sockets are closed on the loop
        # that opened them. Entries of loops closed without that are dropped.
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._async_clients.get(loop)
            if entry is None:
                for old in [old for old in self._async_clients if old.is_closed()]:
                    del self._async_clients[old]
                client = self._new_client(asynchronous=True)
                entry = self._async_clients[loop] = (client, _close_at_loop_end(client))
                fresh = True
            else:
                fresh = False
        if fresh:
            await entry[1].__anext__()
        return entry[0]

    def _new_client(self, *, asynchronous: bool) -> Any:
        """A new client object for ``_call``/``_acall``: the SDK's, unless a subclass has a leaner
        one. An async one needs an awaitable ``close()``; a sync one a plain ``close()``."""
        sync_cls, async_cls = self._sdk_classes()
        cls = async_cls if asynchronous else sync_cls
        return cls(**self._with_shared_tls(self.sdk_client_kwargs(), asynchronous))

    def _with_shared_tls(self, kwargs: dict[str, Any], asynchronous: bool) -> dict[str, Any]:
        # The process's one TLS context instead of a new one per SDK client (~40 ms each); a
        # caller's own http_client (client_kwargs) is used as given.
        if "http_client" not in kwargs:
            from rlm_core.clients.transports import sdk_http_client

            kwargs["http_client"] = sdk_http_client(self._sdk(), asynchronous=asynchronous)
        return kwargs

    def close(self) -> None:
        with self._lock:
            sync_client, self._sync_client = self._sync_client, None
            # Async clients can only be closed on their own loop: aclose() or the loop's end does it.
            self._async_clients = {}
        if sync_client is not None:
            sync_client.close()

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._async_clients.pop(loop, None)
        if entry is not None:
            await entry[1].aclose()
        self.close()

    # -- calls -------------------------------------------------------------------------------

    def complete(self, request: LMRequest) -> LMResponse:
        started = time.perf_counter()
        try:
            info = self._call(self._get_sync_client(), request)
        except Exception as exc:
            error = self._translate(exc)
            if error is None:
                raise
            raise error from exc
        return self._to_response(info, time.perf_counter() - started)

    async def acomplete(self, request: LMRequest) -> LMResponse:
        started = time.perf_counter()
        try:
            info = await self._acall(await self._get_async_client(), request)
        except Exception as exc:
            error = self._translate(exc)
            if error is None:
                raise
            raise error from exc
        return self._to_response(info, time.perf_counter() - started)

    def _output_cap(self, request: LMRequest) -> int | None:
        # The engine has already lowered request.max_tokens to what the budget allows: it wins.
        return request.max_tokens if request.max_tokens is not None else self.max_tokens

    def _common_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"model": self.model_name}
        if self.temperature is not None:
            params["temperature"] = self.temperature
        params.update(self.extra_params)
        return params

    def _to_response(self, info: dict[str, Any], latency: float) -> LMResponse:
        usage: TokenUsage = info["usage"]
        return LMResponse(
            text=info["text"],
            usage=usage,
            model=info.get("model") or self.model_name,
            finish_reason=info.get("finish_reason"),
            cost=self.price.cost(usage) if self.price is not None else None,
            latency=latency,
            top_logprobs=info.get("top_logprobs"),
        )

    # -- errors ------------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        if self._api_key is not None and len(self._api_key.reveal()) >= 4:
            text = text.replace(self._api_key.reveal(), "[redacted]")
        for value in self.default_headers.values():
            if len(value) >= 8:
                text = text.replace(value, "[redacted]")
        text = redact_text(_KEY_SHAPES.sub("[redacted]", text))
        return text if len(text) <= _MAX_PROVIDER_TEXT else text[:_MAX_PROVIDER_TEXT] + "..."

    def _where(self) -> str:
        return redact_text(self.base_url) if self.base_url else "the provider's default endpoint"

    def _retries(self) -> int:
        return self.max_retries if self.max_retries is not None else self._default_max_retries()

    def _default_max_retries(self) -> int:
        """The retries made when ``max_retries`` is not set: the SDK's default."""
        return int(getattr(self._sdk(), "DEFAULT_MAX_RETRIES", 2))

    def _translate(self, exc: Exception) -> ProviderError | None:
        """A ProviderError for an SDK or wire failure; ``None`` for anything else (re-raised as is)."""
        # An SDK exception implies its module is loaded: a client on its own HTTP path never pays
        # the SDK's import (about a second) just to look at an error.
        sdk = sys.modules.get(self._sdk_module_name)

        def sdk_error(name: str) -> bool:
            return sdk is not None and isinstance(exc, getattr(sdk, name))

        who = f"{self.backend} model {self.model_name!r}"

        def error(message: str, retryable: bool) -> ProviderError:
            return ProviderError(message, client=self.backend, model=self.model_name, retryable=retryable)

        if isinstance(exc, WireStatusError) or sdk_error("APIStatusError"):
            status = int(getattr(exc, "status_code", 0))
            said = self._redact(str(getattr(exc, "message", "") or exc))
            if status in (401, 403):
                return error(
                    f"{who}: HTTP {status}, the API key was rejected ({said}). Check the "
                    f"{self._key_hint()} environment variable or pass backend_kwargs={{'api_key': ...}}.",
                    False,
                )
            if status == 404:
                return error(
                    f"{who}: HTTP 404, not found at {self._where()} ({said}). Check model_name and base_url.",
                    False,
                )
            if status in (408, 409, 429) or status >= 500:
                kind = "rate limited" if status == 429 else "server error"
                return error(
                    f"{who}: HTTP {status}, {kind} ({said}), still failing after {self._retries()} retries "
                    "by the SDK. Raise backend_kwargs['max_retries'], lower concurrency, or try again later.",
                    True,
                )
            return error(
                f"{who}: HTTP {status}, the request was rejected ({said}). Check the prompt length against "
                f"the model's context window and the extra parameters {sorted(self.extra_params)}.",
                False,
            )
        # The SDK's APITimeoutError is an APIConnectionError: the timeout is asked about first.
        if isinstance(exc, WireTimeoutError) or sdk_error("APITimeoutError"):
            limit = f"{self.timeout:g}s" if self.timeout is not None else "the SDK's default timeout"
            return error(
                f"{who}: no reply within {limit} from {self._where()}, after {self._retries()} retries by "
                "the SDK. Raise backend_kwargs['timeout'] or check that the endpoint is responsive.",
                True,
            )
        if isinstance(exc, WireConnectionError) or sdk_error("APIConnectionError"):
            cause = exc.__cause__ or exc
            return error(
                f"{who}: could not connect to {self._where()} ({self._redact(repr(cause))}), after "
                f"{self._retries()} retries by the SDK. Is base_url right and the endpoint reachable from here?",
                True,
            )
        if isinstance(exc, (json.JSONDecodeError, IncompleteReplyError)) or sdk_error(
            "APIResponseValidationError"
        ):
            return error(
                f"{who}: the endpoint {self._where()} sent a reply that is not the expected JSON "
                f"({self._redact(str(exc))}). Check that base_url points at an API that speaks "
                f"{self.backend}'s protocol.",
                False,
            )
        if isinstance(exc, WireReplyError) or sdk_error(self._sdk_base_error):
            return error(f"{who}: the SDK failed: {self._redact(str(exc))}", False)
        return None


def fit_signature(method: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Move parameters the installed SDK's ``method`` does not accept into ``extra_body``.

    SDK releases add and drop keyword arguments (anthropic 2.x dropped ``temperature`` from
    ``messages.create``) while the HTTP API still takes them; extra_body sends them unchanged.
    """
    accepted = _accepted_params(getattr(method, "__func__", method))
    if accepted is None:
        return params
    unknown = [key for key in params if key not in accepted]
    if not unknown:
        return params
    fitted = dict(params)
    extra_body = dict(fitted.pop("extra_body", None) or {})
    for key in unknown:
        extra_body.setdefault(key, fitted.pop(key))
    fitted["extra_body"] = extra_body
    return fitted


@functools.lru_cache(maxsize=64)
def _accepted_params(function: Any) -> frozenset[str] | None:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters)


# -- argument checks shared by the SDK clients -----------------------------------------------


def _positive(cls: str, name: str, value: Any, kind: type) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(f"{cls}: {name} must be a positive number, got {safe_repr(value)}.")
    if kind is int and not isinstance(value, int):
        raise ConfigurationError(f"{cls}: {name} must be a positive integer, got {safe_repr(value)}.")
    return kind(value)


def _non_negative_int(cls: str, name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{cls}: {name} must be an integer >= 0, got {safe_repr(value)}.")
    return value


def _as_price(cls: str, price: Any) -> Price:
    if isinstance(price, Price):
        return price
    if isinstance(price, Sequence) and not isinstance(price, str) and len(price) == 2:
        return Price(float(price[0]), float(price[1]))
    raise ConfigurationError(
        f"{cls}: price must be rlm_core.clients.base.Price(input_per_mtok, output_per_mtok) or a pair of "
        f"USD-per-million-token numbers, got {safe_repr(price)}."
    )


def _lookup_price(model_name: str) -> Price | None:
    from rlm_core.clients.pricing import price_for

    return price_for(model_name)


async def _close_at_loop_end(client: Any) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await client.close()
