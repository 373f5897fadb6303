"""The built-in ``openai`` client: Chat Completions for OpenAI and any OpenAI-compatible endpoint
(the presets and rlm-llamacpp build on it), over one of two transports:

- ``"http"`` (the default where it applies): one pooled HTTP client per client object and event
  loop, JSON read straight into the reply fields, without importing the ``openai`` package
  (``rlm_core.clients.openai_http``, which says what it keeps from the SDK and why it exists);
- ``"sdk"``: the official SDK's low-level ``post``, for what only the SDK does (Azure's endpoints
  and token auth, a caller's own ``http_client``, the SDK's other constructor arguments).

The parameters, the reply fields and the errors are the same either way; tests run both.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar
from urllib.parse import urlsplit

from rlm_core.clients.sdk_client import IncompleteReplyError, SDKChatClient, fit_signature
from rlm_core.errors import ConfigurationError
from rlm_core.types import LMRequest, TokenUsage

TRANSPORTS = ("sdk", "http")
TRANSPORT_ENV = "RLM_OPENAI_TRANSPORT"  # the default when backend_kwargs has no ``transport``
# client_kwargs the lean transport understands (as headers); any other one needs the SDK.
_HTTP_CLIENT_KWARGS = frozenset({"organization", "project"})


class OpenAIClient(SDKChatClient):
    """Chat Completions through the official ``openai`` SDK (also any OpenAI-compatible endpoint).

    backend_kwargs: ``model_name`` (required), ``api_key`` (else ``OPENAI_API_KEY``), ``base_url``
    (else the SDK's ``OPENAI_BASE_URL`` or the official endpoint), ``timeout``, ``max_retries``,
    ``default_headers``, ``max_tokens`` (default output cap), ``temperature``, ``context_window``,
    ``price`` (``Price`` or ``(input, output)`` USD per million tokens), ``stream``,
    ``max_tokens_param`` (``"max_completion_tokens"`` for the official endpoint, else
    ``"max_tokens"``), ``client_kwargs`` (more SDK constructor arguments, e.g. ``organization``),
    ``transport`` (``"http"`` or ``"sdk"``, see the module docstring; by default ``"http"`` unless
    ``RLM_OPENAI_TRANSPORT=sdk`` is set, the class needs the SDK, or ``client_kwargs`` holds more
    than ``organization``/``project``);
    any other keyword is sent with every ``create()`` call (``top_p``, ``reasoning_effort``, ...).
    A missing ``usage`` in a reply is recorded as zero tokens.
    """

    backend = "openai"
    # Chat Completions gives token log-probabilities (``logprobs``), so scored sub-calls work.
    token_logprobs = True
    api_key_envs: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY",)
    _sdk_module_name: ClassVar[str] = "openai"
    _sdk_base_error: ClassVar[str] = "OpenAIError"
    # False for an endpoint only the SDK speaks to (Azure's deployment URLs and token auth).
    http_transport: ClassVar[bool] = True

    def __init__(
        self,
        model_name: str | None = None,
        *,
        max_tokens_param: str | None = None,
        transport: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(model_name, **kwargs)
        if max_tokens_param not in (None, "max_tokens", "max_completion_tokens"):
            raise ConfigurationError(
                f"max_tokens_param must be 'max_tokens' or 'max_completion_tokens', got {max_tokens_param!r}."
            )
        self.max_tokens_param = max_tokens_param or self._default_max_tokens_param()
        self.transport = self._choose_transport(transport)

    def _choose_transport(self, transport: str | None) -> str:
        cls = type(self).__name__
        if transport not in (None, *TRANSPORTS):
            raise ConfigurationError(f"{cls}: transport must be 'http' or 'sdk', got {transport!r}.")
        sdk_only = sorted(set(self.client_kwargs) - _HTTP_CLIENT_KWARGS)
        if transport == "http" and not self.http_transport:
            raise ConfigurationError(f"{cls} needs the openai SDK: remove transport='http'.")
        if transport == "http" and sdk_only:
            raise ConfigurationError(
                f"{cls}: client_kwargs {sdk_only} are SDK constructor arguments; use transport='sdk' "
                "or remove them (organization and project work on either transport)."
            )
        if transport is not None:
            return transport
        # The process-wide default, e.g. to put every client back on the SDK without code changes.
        preferred = os.environ.get(TRANSPORT_ENV) or "http"
        if preferred not in TRANSPORTS:
            raise ConfigurationError(f"{TRANSPORT_ENV} must be 'http' or 'sdk', got {preferred!r}.")
        return "http" if preferred == "http" and self.http_transport and not sdk_only else "sdk"

    def _default_max_tokens_param(self) -> str:
        # The official API wants max_completion_tokens (reasoning models reject max_tokens);
        # OpenAI-compatible servers generally understand only max_tokens.
        url = self.base_url or os.environ.get("OPENAI_BASE_URL")
        official = not url or urlsplit(url).hostname == "api.openai.com"
        return "max_completion_tokens" if official else "max_tokens"

    def _sdk_classes(self) -> tuple[type[Any], type[Any]]:
        sdk = self._sdk()
        return sdk.OpenAI, sdk.AsyncOpenAI

    # -- the lean transport ------------------------------------------------------------------

    def _new_client(self, *, asynchronous: bool) -> Any:
        if self.transport != "http":
            return super()._new_client(asynchronous=asynchronous)
        from rlm_core.clients.openai_http import AsyncChatHTTP, ChatHTTP, SyncChatHTTP

        cls = AsyncChatHTTP if asynchronous else SyncChatHTTP
        return cls(
            ChatHTTP.pool(asynchronous),
            base_url=self.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1",
            headers=self._http_headers(),
            max_retries=self._retries(),
            timeout=self.timeout,
        )

    def _http_headers(self) -> dict[str, str]:
        """The headers the SDK would send that servers act on (they include the key: never log them)."""
        from rlm_core._version import __version__

        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": f"rlm-core/{__version__}",
        }
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        for name, env, header in (
            ("organization", "OPENAI_ORG_ID", "OpenAI-Organization"),
            ("project", "OPENAI_PROJECT_ID", "OpenAI-Project"),
        ):
            value = self.client_kwargs.get(name)
            value = os.environ.get(env) if value is None else value
            if value:
                headers[header] = str(value)
        headers.update(self.default_headers)  # the user's headers win, as in the SDK
        return headers

    def _default_max_retries(self) -> int:
        if self.transport != "http":
            return super()._default_max_retries()
        from rlm_core.clients.openai_http import DEFAULT_MAX_RETRIES

        return DEFAULT_MAX_RETRIES

    def _http_arguments(self, request: LMRequest) -> tuple[dict[str, Any], dict[str, Any]]:
        """The JSON body and the request options, split as ``_post_arguments`` splits them for the SDK."""
        params = self._params(request)
        body = {k: v for k, v in params.items() if k not in _REQUEST_OPTIONS}
        body.update(params.get("extra_body") or {})
        options: dict[str, Any] = {}
        if params.get("extra_headers"):
            options["headers"] = params["extra_headers"]
        if params.get("extra_query"):
            options["params"] = params["extra_query"]
        if params.get("timeout") is not None:
            options["timeout"] = params["timeout"]
        return body, options

    # -- the SDK transport -------------------------------------------------------------------

    def _params(self, request: LMRequest) -> dict[str, Any]:
        params = self._common_params()
        params["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
        cap = self._output_cap(request)
        if cap is not None:
            params.pop("max_tokens", None)
            params.pop("max_completion_tokens", None)
            params[self.max_tokens_param] = cap
        if request.response_schema is not None:
            params["response_format"] = response_format(request.response_schema)
        if request.top_logprobs:
            params["logprobs"] = True
            params["top_logprobs"] = request.top_logprobs
        if self.stream:
            params["stream"] = True
            params["stream_options"] = {"include_usage": True}
        return params

    def _post_arguments(self, client: Any, request: LMRequest, stream_cls: Any) -> dict[str, Any]:
        """``client.post`` arguments for this request, skipping ``create()``'s request transform.

        That transform walks every message against the SDK's typed schemas on every call; with a
        long root history it was most of a root turn's client CPU (33.5 ms of a turn with 80 messages
        against 5.1 ms without, measured by bench/profile_engine.py). Our parameters are plain JSON
        already, so they go to the SDK's documented low-level ``post`` unchanged: same retries,
        timeouts, headers and errors.
        """
        fitted = fit_signature(client.chat.completions.create, self._params(request))
        body = {k: v for k, v in fitted.items() if k not in _REQUEST_OPTIONS}
        body.update(fitted.get("extra_body") or {})
        options: dict[str, Any] = {}
        if fitted.get("extra_headers"):
            options["headers"] = fitted["extra_headers"]
        if fitted.get("extra_query"):
            options["params"] = fitted["extra_query"]
        if fitted.get("timeout") is not None:
            options["timeout"] = fitted["timeout"]
        types = self._sdk().types.chat
        return {
            "path": "/chat/completions",
            "body": body,
            "options": options,
            "cast_to": types.ChatCompletion,
            "stream": bool(self.stream),
            "stream_cls": stream_cls[types.ChatCompletionChunk],
        }

    def _call(self, client: Any, request: LMRequest) -> dict[str, Any]:
        if self.transport == "http":
            return dict(client.post(*self._http_arguments(request), bool(self.stream)))
        result = client.post(**self._post_arguments(client, request, self._sdk().Stream))
        if not self.stream:
            return _completion_info(result)
        collector = _StreamCollector()
        try:
            for chunk in result:
                collector.add(chunk)
        finally:
            result.close()
        return collector.info()

    async def _acall(self, client: Any, request: LMRequest) -> dict[str, Any]:
        if self.transport == "http":
            return dict(await client.post(*self._http_arguments(request), bool(self.stream)))
        result = await client.post(**self._post_arguments(client, request, self._sdk().AsyncStream))
        if not self.stream:
            return _completion_info(result)
        collector = _StreamCollector()
        try:
            async for chunk in result:
                collector.add(chunk)
        finally:
            await result.close()
        return collector.info()


# create() keywords that configure the request rather than go into its JSON body.
_REQUEST_OPTIONS = frozenset({"extra_body", "extra_headers", "extra_query", "timeout"})


def response_format(schema: dict[str, Any]) -> dict[str, Any]:
    """Structured outputs for a JSON schema (llama.cpp's server turns the same field into a grammar).
    Strict mode only when the schema meets its rules (every object closed, every property required);
    otherwise the provider does its best and the engine's validation catches the rest."""
    return {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "strict": _strict_compatible(schema)},
    }


def _strict_compatible(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object":
        properties = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False or set(schema.get("required", ())) != set(
            properties
        ):
            return False
    children = list((schema.get("properties") or {}).values())
    if isinstance(schema.get("items"), dict):
        children.append(schema["items"])
    return all(_strict_compatible(child) for child in children)


def _field(obj: Any, name: str) -> Any:
    """A field of a reply part: an SDK model's attribute, or a key of the lean transport's JSON.
    One reading of the reply for both transports, so they cannot drift apart."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _completion_info(completion: Any) -> dict[str, Any]:
    choices = _field(completion, "choices")
    choice = choices[0] if choices else None
    return {
        "text": _field(_field(choice, "message"), "content") or "",
        "finish_reason": _field(choice, "finish_reason"),
        "model": _field(completion, "model"),
        "usage": _openai_usage(_field(completion, "usage")),
        "top_logprobs": _first_token_alternatives(_field(choice, "logprobs")),
    }


def _first_token_alternatives(logprobs: Any) -> tuple[tuple[str, float], ...] | None:
    """The first output token's alternatives from a Chat Completions ``logprobs`` object (or None
    when the reply has none), most likely first."""
    content = _field(logprobs, "content")
    if not content:
        return None
    first = content[0]
    options = list(_field(first, "top_logprobs") or ())
    if not options:  # a provider that gives only the chosen token's log-probability
        options = [first]
    pairs = [
        (str(_field(o, "token")), float(_field(o, "logprob")))
        for o in options
        if _field(o, "token") is not None
    ]
    return tuple(sorted(pairs, key=lambda pair: -pair[1])) or None


def _openai_usage(usage: Any) -> TokenUsage:
    if usage is None:
        return TokenUsage()
    return TokenUsage(int(_field(usage, "prompt_tokens") or 0), int(_field(usage, "completion_tokens") or 0))


class _StreamCollector:
    """Accumulates Chat Completions chunks (SDK models or the lean transport's JSON); usage arrives
    in the last one (include_usage)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.model: str | None = None
        self.usage: Any = None
        self.top_logprobs: tuple[tuple[str, float], ...] | None = None
        self.chunks = 0

    def add(self, chunk: Any) -> None:
        self.chunks += 1
        self.model = _field(chunk, "model") or self.model
        usage = _field(chunk, "usage")
        if usage is not None:
            self.usage = usage
        for choice in _field(chunk, "choices") or ():
            if (_field(choice, "index") or 0) != 0:
                continue
            content = _field(_field(choice, "delta"), "content")
            if content:
                self.parts.append(content)
            if self.top_logprobs is None:
                self.top_logprobs = _first_token_alternatives(_field(choice, "logprobs"))
            finish_reason = _field(choice, "finish_reason")
            if finish_reason:
                self.finish_reason = finish_reason

    def info(self) -> dict[str, Any]:
        if not self.chunks:
            raise IncompleteReplyError("the stream ended before its first chunk")
        return {
            "text": "".join(self.parts),
            "finish_reason": self.finish_reason,
            "model": self.model,
            "usage": _openai_usage(self.usage),
            "top_logprobs": self.top_logprobs,
        }
