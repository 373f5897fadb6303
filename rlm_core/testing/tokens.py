"""The loopback servers' deterministic tokenizer: one token per started group of four UTF-8 bytes.

The engine's conservative estimator assumes a provider counts at most one token per UTF-8 byte;
this tokenizer counts about a quarter of that, so budgets tested against it hold for real providers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "MESSAGE_OVERHEAD",
    "REPLY_OVERHEAD",
    "count_message_tokens",
    "count_tokens",
    "text_of",
    "truncate_to_tokens",
]

MESSAGE_OVERHEAD = 4  # per message: role and separators, as chat templates add
REPLY_OVERHEAD = 3  # once per request: the assistant turn the model is primed with


def count_tokens(text: str) -> int:
    """``ceil(len(text.encode("utf-8")) / 4)``."""
    return (len(text.encode("utf-8")) + 3) // 4


def text_of(content: Any) -> str:
    """The text of a message content: a string, or a list of content parts with ``text`` (OpenAI and
    Anthropic both use ``{"type": "text", "text": ...}``); other parts (images, tools) count as empty."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        text = content.get("text")
        return text if isinstance(text, str) else ""
    if isinstance(content, Iterable):
        return "".join(text_of(part) for part in content)
    return str(content)


def count_message_tokens(messages: Iterable[Any]) -> int:
    """``sum(count_tokens(content) + 4 for each message) + 3``.

    A message may be a mapping with ``content`` (wire format) or an object with a ``content``
    attribute (``rlm_core.types.Message``).
    """
    total = REPLY_OVERHEAD
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else message.content
        total += count_tokens(text_of(content)) + MESSAGE_OVERHEAD
    return total


def truncate_to_tokens(text: str, max_tokens: int | None) -> tuple[str, bool]:
    """Cut ``text`` to at most ``max_tokens * 4`` UTF-8 bytes on a character boundary, so that
    ``count_tokens`` of the result never exceeds ``max_tokens``. Returns ``(text, truncated)``."""
    if max_tokens is None:
        return text, False
    limit = max(0, max_tokens) * 4
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text, False
    # errors="ignore" drops a multi-byte character split by the cut instead of garbling it
    return data[:limit].decode("utf-8", errors="ignore"), True
