"""Conservative prompt-size estimates for budget checks, learned from the provider's own counts.

Byte-level BPE tokenizers (GPT, Claude, Llama, Qwen) never use more than one token per UTF-8 byte, so
before a model has answered we count bytes plus a per-message allowance. After each call we learn the
model's real tokens-per-byte ratio and estimate with that ratio plus a safety margin, never above bytes.
"""

from __future__ import annotations

import threading

from rlm_core.types import Message

# More bytes than any common tokenizer packs into one token on real text: a prompt this ratio cannot
# fit into a window surely does not fit (a lower bound on its tokens, for refusing before sending).
MAX_BYTES_PER_TOKEN = 8
# What English text and code average with those tokenizers: for rough sizes (when to compact, how
# long a sub-call prompt may be), never for budget checks, which use the bounds here.
TYPICAL_BYTES_PER_TOKEN = 3.5
PER_MESSAGE_OVERHEAD = 8  # role markers and separators of chat templates
PER_REQUEST_OVERHEAD = 8
SAFETY_MARGIN = 1.25


def message_bytes(messages: list[Message]) -> int:
    return sum(len(m.content.encode("utf-8", "replace")) for m in messages)


def estimate_output_tokens(text: str) -> int:
    """An upper bound on a reply's tokens when the provider did not count them: one per UTF-8 byte."""
    return len(text.encode("utf-8", "replace")) + 1


class TokenEstimator:
    """One per client: ``estimate(messages)`` is an upper bound on what the provider will count."""

    def __init__(self) -> None:
        self._ratio: float | None = None  # learned provider tokens per byte (max seen)
        self._lock = threading.Lock()

    def estimate(self, messages: list[Message], size: int | None = None) -> int:
        """``size``: ``message_bytes(messages)`` when the caller has it already (it is not cheap for a
        long root history)."""
        size = message_bytes(messages) if size is None else size
        overhead = PER_MESSAGE_OVERHEAD * len(messages) + PER_REQUEST_OVERHEAD
        ratio = self._ratio
        if ratio is None:
            return size + overhead
        return min(size, int(size * ratio * SAFETY_MARGIN) + 1) + overhead

    def observe(self, messages: list[Message], provider_input_tokens: int, size: int | None = None) -> None:
        """Learn from what the provider counted for these messages."""
        size = message_bytes(messages) if size is None else size
        if size < 64 or provider_input_tokens <= 0:
            return  # too small to say anything about the ratio
        overhead = PER_MESSAGE_OVERHEAD * len(messages) + PER_REQUEST_OVERHEAD
        ratio = max(provider_input_tokens - overhead, 0) / size
        with self._lock:
            self._ratio = ratio if self._ratio is None else max(self._ratio, ratio)
