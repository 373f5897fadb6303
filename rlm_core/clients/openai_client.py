"""The built-in ``openai`` client: Chat Completions through the official SDK, for OpenAI and any
OpenAI-compatible endpoint (the presets and rlm-llamacpp build on it)."""

from __future__ import annotations

import os
from typing import Any, ClassVar
from urllib.parse import urlsplit

from rlm_core.clients.sdk_client import IncompleteReplyError, SDKChatClient, fit_signature
from rlm_core.errors import ConfigurationError
from rlm_core.types import LMRequest, TokenUsage


class OpenAIClient(SDKChatClient):
    """Chat Completions through the official ``openai`` SDK (also any OpenAI-compatible endpoint).

    backend_kwargs: ``model_name`` (required), ``api_key`` (else ``OPENAI_API_KEY``), ``base_url``
    (else the SDK's ``OPENAI_BASE_URL`` or the official endpoint), ``timeout``, ``max_retries``,
    ``default_headers``, ``max_tokens`` (default output cap), ``temperature``, ``context_window``,
    ``price`` (``Price`` or ``(input, output)`` USD per million tokens), ``stream``,
    ``max_tokens_param`` (``"max_completion_tokens"`` for the official endpoint, else
    ``"max_tokens"``), ``client_kwargs`` (more SDK constructor arguments, e.g. ``organization``);
    any other keyword is sent with every ``create()`` call (``top_p``, ``reasoning_effort``, ...).
    A missing ``usage`` in a reply is recorded as zero tokens.
    """

    backend = "openai"
    # Chat Completions gives token log-probabilities (``logprobs``), so scored sub-calls work.
    token_logprobs = True
    api_key_envs: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY",)
    _sdk_module_name: ClassVar[str] = "openai"
    _sdk_base_error: ClassVar[str] = "OpenAIError"

    def __init__(self, model_name: str | None = None, *, max_tokens_param: str | None = None, **kwargs: Any):
        super().__init__(model_name, **kwargs)
        if max_tokens_param not in (None, "max_tokens", "max_completion_tokens"):
            raise ConfigurationError(
                f"max_tokens_param must be 'max_tokens' or 'max_completion_tokens', got {max_tokens_param!r}."
            )
        self.max_tokens_param = max_tokens_param or self._default_max_tokens_param()

    def _default_max_tokens_param(self) -> str:
        # The official API wants max_completion_tokens (reasoning models reject max_tokens);
        # OpenAI-compatible servers generally understand only max_tokens.
        url = self.base_url or os.environ.get("OPENAI_BASE_URL")
        official = not url or urlsplit(url).hostname == "api.openai.com"
        return "max_completion_tokens" if official else "max_tokens"

    def _sdk_classes(self) -> tuple[type[Any], type[Any]]:
        sdk = self._sdk()
        return sdk.OpenAI, sdk.AsyncOpenAI

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


def _completion_info(completion: Any) -> dict[str, Any]:
    choice = completion.choices[0] if completion.choices else None
    return {
        "text": (choice.message.content if choice is not None else None) or "",
        "finish_reason": choice.finish_reason if choice is not None else None,
        "model": completion.model,
        "usage": _openai_usage(completion.usage),
        "top_logprobs": _first_token_alternatives(getattr(choice, "logprobs", None)),
    }


def _first_token_alternatives(logprobs: Any) -> tuple[tuple[str, float], ...] | None:
    """The first output token's alternatives from a Chat Completions ``logprobs`` object (or None
    when the reply has none), most likely first."""
    content = getattr(logprobs, "content", None) if logprobs is not None else None
    if not content:
        return None
    first = content[0]
    options = list(getattr(first, "top_logprobs", None) or ())
    if not options:  # a provider that gives only the chosen token's log-probability
        options = [first]
    pairs = [(str(o.token), float(o.logprob)) for o in options if o.token is not None]
    return tuple(sorted(pairs, key=lambda pair: -pair[1])) or None


def _openai_usage(usage: Any) -> TokenUsage:
    if usage is None:
        return TokenUsage()
    return TokenUsage(int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0))


class _StreamCollector:
    """Accumulates Chat Completions chunks; usage arrives in the last one (include_usage)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.model: str | None = None
        self.usage: Any = None
        self.top_logprobs: tuple[tuple[str, float], ...] | None = None
        self.chunks = 0

    def add(self, chunk: Any) -> None:
        self.chunks += 1
        self.model = chunk.model or self.model
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices or ():
            if choice.index != 0:
                continue
            if choice.delta is not None and choice.delta.content:
                self.parts.append(choice.delta.content)
            if self.top_logprobs is None:
                self.top_logprobs = _first_token_alternatives(getattr(choice, "logprobs", None))
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason

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
