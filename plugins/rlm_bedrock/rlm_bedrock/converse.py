"""The Converse API's shapes: engine messages to a request, a response or event stream to a reply."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rlm_core.errors import RLMError
from rlm_core.types import Message, TokenUsage

__all__ = [
    "IncompleteStreamError",
    "StreamCollector",
    "reply_from_response",
    "to_converse_messages",
    "usage_of",
]

# Converse rejects a conversation that starts with the assistant, and empty text blocks.
_OPENING_USER_TURN = "Continue."
_EMPTY_TEXT = "(empty)"


class IncompleteStreamError(RLMError):
    """A ConverseStream ended before its messageStop event."""


def to_converse_messages(messages: Sequence[Message]) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """Split engine messages into Converse ``system`` blocks and alternating user/assistant turns.

    System messages (wherever they stand) become ``system`` blocks; consecutive same-role messages
    are merged into one turn of several text blocks; a conversation that would start with the
    assistant (or be empty) gets a short user turn first.
    """
    system = [{"text": m.content} for m in messages if m.role == "system" and m.content]
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        block = {"text": message.content if message.content.strip() else _EMPTY_TEXT}
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].append(block)
        else:
            turns.append({"role": role, "content": [block]})
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [{"text": _OPENING_USER_TURN}]})
    return system, turns


def usage_of(usage: Mapping[str, Any] | None) -> TokenUsage:
    """Bedrock's own token counts; prompt-cache reads and writes still count as input."""
    if not usage:
        return TokenUsage()
    input_tokens = (
        int(usage.get("inputTokens") or 0)
        + int(usage.get("cacheReadInputTokens") or 0)
        + int(usage.get("cacheWriteInputTokens") or 0)
    )
    return TokenUsage(input_tokens, int(usage.get("outputTokens") or 0))


def _text_of(blocks: Iterable[Mapping[str, Any]]) -> str:
    return "".join(block["text"] for block in blocks if isinstance(block.get("text"), str))


def reply_from_response(response: Mapping[str, Any]) -> dict[str, Any]:
    """``text``, ``usage`` and ``finish_reason`` of a Converse response."""
    message = response.get("output", {}).get("message", {})
    return {
        "text": _text_of(message.get("content") or ()),
        "usage": usage_of(response.get("usage")),
        "finish_reason": response.get("stopReason"),
    }


class StreamCollector:
    """Accumulates ConverseStream events; usage arrives in the closing ``metadata`` event."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.usage = TokenUsage()
        self.stopped = False

    def add(self, event: Mapping[str, Any]) -> None:
        if "contentBlockDelta" in event:
            text = event["contentBlockDelta"].get("delta", {}).get("text")
            if text:
                self.parts.append(text)
        elif "messageStop" in event:
            self.stopped = True
            self.finish_reason = event["messageStop"].get("stopReason")
        elif "metadata" in event:
            self.usage = usage_of(event["metadata"].get("usage"))

    def reply(self) -> dict[str, Any]:
        if not self.stopped:
            raise IncompleteStreamError("the ConverseStream ended before its messageStop event")
        return {"text": "".join(self.parts), "usage": self.usage, "finish_reason": self.finish_reason}
