"""The built-in ``anthropic`` client: the Messages API through the official ``anthropic`` SDK."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any, ClassVar

from rlm_core.clients.sdk_client import IncompleteReplyError, SDKChatClient, fit_signature
from rlm_core.redact import Secret
from rlm_core.types import LMRequest, Message, TokenUsage

__all__ = ["ANSWER_TOOL", "DEFAULT_MAX_TOKENS", "AnthropicClient", "to_anthropic_messages"]

# The Messages API requires max_tokens; used when neither the request nor backend_kwargs set one.
DEFAULT_MAX_TOKENS = 4096
# The API rejects a conversation that starts with an assistant turn, and empty text blocks.
_OPENING_USER_TURN = "Continue."
_EMPTY_TEXT = "(empty)"
# The tool a typed answer is requested through; its input is the answer.
ANSWER_TOOL = "answer"


class AnthropicClient(SDKChatClient):
    """Claude through the official ``anthropic`` SDK.

    backend_kwargs as for ``OpenAIClient`` (``model_name``, ``api_key`` (else ``ANTHROPIC_API_KEY``),
    ``base_url``, ``timeout``, ``max_retries``, ``default_headers``, ``max_tokens`` (default 4096),
    ``temperature``, ``context_window``, ``price``, ``stream``, ``client_kwargs``), plus
    ``auth_token`` (else ``ANTHROPIC_AUTH_TOKEN``) for bearer-token gateways. Other keywords go to
    ``messages.create()`` (``top_k``, ``thinking``, ``extra_body``, ...). System messages are sent as
    ``system=``; input usage includes cache reads and writes.
    """

    backend = "anthropic"
    api_key_envs: ClassVar[tuple[str, ...]] = ("ANTHROPIC_API_KEY",)
    _sdk_module_name: ClassVar[str] = "anthropic"
    _sdk_base_error: ClassVar[str] = "AnthropicError"

    def __init__(
        self, model_name: str | None = None, *, auth_token: str | None = None, **kwargs: Any
    ) -> None:
        token = auth_token or (None if kwargs.get("api_key") else os.environ.get("ANTHROPIC_AUTH_TOKEN"))
        self._auth_token = Secret(token) if token else None
        super().__init__(model_name, **kwargs)

    def _resolve_api_key(self, api_key: str | None) -> Secret | None:
        if self._auth_token is not None and not api_key and not os.environ.get("ANTHROPIC_API_KEY"):
            return None  # the bearer token authenticates instead
        return super()._resolve_api_key(api_key)

    def _key_hint(self) -> str:
        return "ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN)"

    def sdk_client_kwargs(self) -> dict[str, Any]:
        kwargs = super().sdk_client_kwargs()
        if self._auth_token is not None and "api_key" not in kwargs:
            kwargs["auth_token"] = self._auth_token.reveal()
        return kwargs

    def _redact(self, text: str) -> str:
        if self._auth_token is not None:
            text = text.replace(self._auth_token.reveal(), "[redacted]")
        return super()._redact(text)

    def _sdk_classes(self) -> tuple[type[Any], type[Any]]:
        sdk = self._sdk()
        return sdk.Anthropic, sdk.AsyncAnthropic

    def _params(self, request: LMRequest) -> dict[str, Any]:
        params = self._common_params()
        system, messages = to_anthropic_messages(request.messages)
        params["messages"] = messages
        if system:
            params["system"] = system
        params["max_tokens"] = self._output_cap(request) or DEFAULT_MAX_TOKENS
        if request.response_schema is not None:
            # Anthropic's structured output: one tool whose input schema is the answer's, forced.
            params["tools"] = [
                {
                    "name": ANSWER_TOOL,
                    "description": "Give the answer in the required structure.",
                    "input_schema": request.response_schema,
                }
            ]
            params["tool_choice"] = {"type": "tool", "name": ANSWER_TOOL}
        return params

    def _call(self, client: Any, request: LMRequest) -> dict[str, Any]:
        params = self._params(request)
        if not self.stream:
            create = client.messages.create
            return _message_info(create(**fit_signature(create, params)))
        # The SDK's stream helper accumulates the events (text deltas, usage) into a final Message.
        with client.messages.stream(**fit_signature(client.messages.stream, params)) as stream:
            return _message_info(_final(stream))

    async def _acall(self, client: Any, request: LMRequest) -> dict[str, Any]:
        params = self._params(request)
        if not self.stream:
            create = client.messages.create
            return _message_info(await create(**fit_signature(create, params)))
        async with client.messages.stream(**fit_signature(client.messages.stream, params)) as stream:
            try:
                message = await stream.get_final_message()
            except AssertionError as exc:
                raise IncompleteReplyError("the stream ended before a message_start event") from exc
            return _message_info(message)


def to_anthropic_messages(messages: Sequence[Message]) -> tuple[str | None, list[dict[str, str]]]:
    """Split engine messages into the Messages API's ``system`` text and alternating turns.

    System messages (wherever they are) join into ``system``; consecutive same-role messages merge;
    a conversation that would start with the assistant (or be empty) gets a short user turn first.
    """
    system_parts: list[str] = []
    turns: list[dict[str, str]] = []
    for message in messages:
        if message.role == "system":
            if message.content:
                system_parts.append(message.content)
            continue
        role = "assistant" if message.role == "assistant" else "user"
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] = f"{turns[-1]['content']}\n\n{message.content}"
        else:
            turns.append({"role": role, "content": message.content})
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": _OPENING_USER_TURN})
    for turn in turns:
        if not turn["content"].strip():
            turn["content"] = _EMPTY_TEXT
    return ("\n\n".join(system_parts) or None), turns


def _final(stream: Any) -> Any:
    # The SDK asserts when a stream ends without message_start (e.g. a proxy's non-SSE body).
    try:
        return stream.get_final_message()
    except AssertionError as exc:
        raise IncompleteReplyError("the stream ended before a message_start event") from exc


def _message_info(message: Any) -> dict[str, Any]:
    blocks = message.content or ()
    text = "".join(block.text for block in blocks if getattr(block, "type", None) == "text")
    # A forced answer tool's input is the typed answer: it replaces the text as JSON.
    for block in blocks:
        if getattr(block, "type", None) == "tool_use" and getattr(block, "name", None) == ANSWER_TOOL:
            text = json.dumps(block.input, ensure_ascii=False)
    return {
        "text": text,
        "finish_reason": message.stop_reason,
        "model": message.model,
        "usage": _anthropic_usage(message.usage),
    }


def _anthropic_usage(usage: Any) -> TokenUsage:
    if usage is None:
        return TokenUsage()
    # Cached prompt tokens are reported apart from input_tokens but still count as input.
    input_tokens = (
        int(usage.input_tokens or 0)
        + int(getattr(usage, "cache_creation_input_tokens", None) or 0)
        + int(getattr(usage, "cache_read_input_tokens", None) or 0)
    )
    return TokenUsage(input_tokens, int(usage.output_tokens or 0))
