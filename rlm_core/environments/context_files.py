"""Large contexts as file contents produced chunk by chunk, so the host never holds a second copy.

A ``str`` becomes its UTF-8 text; a list, tuple or dict becomes JSON lines (a first line naming the
shape, then one item or one single-entry object per line) that the runtime rebuilds line by line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from rlm_core.errors import ConfigurationError

CHUNK_CHARS = 8 << 20  # characters encoded at a time: a few tens of MB of transient memory at most


class ContextFile:
    """The bytes of one context's file, as a re-iterable sequence of chunks (each pass yields the same).

    ``fmt`` is the runtime's name for the layout (``"text"`` or ``"json-lines"``); ``size`` is the exact
    byte count when known without encoding (ASCII text), else None. Iterating raises
    :class:`ConfigurationError` for a value JSON cannot hold.
    """

    def __init__(self, value: Any, chunk_chars: int | None = None) -> None:
        self.value = value
        self.chunk_chars = chunk_chars or CHUNK_CHARS
        self.is_text = isinstance(value, str)
        self.fmt = "text" if self.is_text else "json-lines"
        self.size: int | None = len(value) if self.is_text and value.isascii() else None

    def at_least_chars(self, limit: int) -> bool:
        """Whether the file holds at least ``limit`` characters; encodes no more than that to find out
        (so a small list or dict is checked in full: :class:`ConfigurationError` if JSON cannot hold it)."""
        if self.is_text:
            return len(self.value) >= limit
        seen = 0
        try:
            for piece in self._json_pieces():
                seen += len(piece)
                if seen >= limit:
                    return True
        except (TypeError, ValueError) as exc:
            raise self._unsendable(exc) from exc
        return False

    def __iter__(self) -> Iterator[bytes]:
        try:
            if self.is_text:
                text: str = self.value
                for start in range(0, len(text), self.chunk_chars):
                    yield text[start : start + self.chunk_chars].encode("utf-8")
                return
            batch: list[str] = []
            batched = 0
            for piece in self._json_pieces():
                batch.append(piece)
                batched += len(piece)
                if batched >= self.chunk_chars:
                    yield "".join(batch).encode("utf-8")
                    batch, batched = [], 0
            if batch:
                yield "".join(batch).encode("utf-8")
        except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError: lone surrogates
            raise self._unsendable(exc) from exc

    def _unsendable(self, exc: Exception) -> ConfigurationError:
        return ConfigurationError(
            f"context of type {type(self.value).__name__} cannot be sent into a sandbox ({exc}); pass "
            "a str of valid Unicode, or a list/dict of JSON values"
        )

    def _json_pieces(self) -> Iterator[str]:
        value = self.value
        if isinstance(value, (list, tuple)):
            yield "list\n"
            for item in value:
                yield from self._json_item(item)
        elif isinstance(value, dict):
            yield "dict\n"
            for key, item in value.items():
                # A one-entry object per line keeps json's own key rules (int keys become strings).
                yield json.dumps({key: item}, ensure_ascii=False) + "\n"
        else:
            yield "value\n"
            yield json.dumps(value, ensure_ascii=False) + "\n"

    def _json_item(self, item: Any) -> Iterator[str]:
        if isinstance(item, str) and len(item) > self.chunk_chars:
            # One huge string item is escaped in slices: JSON escapes each character on its own.
            yield '"'
            for start in range(0, len(item), self.chunk_chars):
                yield json.dumps(item[start : start + self.chunk_chars], ensure_ascii=False)[1:-1]
            yield '"\n'
        else:
            yield json.dumps(item, ensure_ascii=False) + "\n"
