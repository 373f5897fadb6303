"""Large contexts as file contents produced chunk by chunk, so the host never holds a second copy.

A ``str`` becomes its UTF-8 text; a list, tuple or dict becomes JSON lines (a first line naming the
shape, then a JSON array of items or an object of entries per line) that the runtime rebuilds line by
line, so neither side holds the whole JSON text.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterator
from typing import Any

from rlm_core.errors import ConfigurationError

CHUNK_CHARS = 1 << 20  # characters encoded at a time: a few MB of transient memory at most
ITEMS_PER_LINE = 1024  # list items or dict entries per JSON line


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
        self.bytes_produced = 0  # by the last complete pass

    def text_shape(self) -> dict[str, int]:
        """For text: its length and a character at least as wide as its widest, so the runtime can
        allocate the final str before reading (it checks both against the file)."""
        text: str = self.value
        if text.isascii():
            return {"chars": len(text), "widest": 0x7F}
        # The str's storage width, from its size: max(text) would walk every character in Python.
        width = (sys.getsizeof(text) - sys.getsizeof("\xe9" * 2) + 3) // (len(text) + 1)
        return {"chars": len(text), "widest": {1: 0xFF, 2: 0xFFFF}.get(width, 0x10FFFF)}

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
        produced = 0
        for chunk in self._chunks():
            produced += len(chunk)
            yield chunk
        self.bytes_produced = produced

    def _chunks(self) -> Iterator[bytes]:
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
        # Items go in batches, each dumped by json's C encoder: one call per item costs seconds per
        # million items on both sides.
        value = self.value
        if isinstance(value, (list, tuple)):
            yield "list\n"
            batch: list[Any] = []
            for item in value:
                if isinstance(item, str) and len(item) > self.chunk_chars:
                    if batch:
                        yield json.dumps(batch, ensure_ascii=False) + "\n"
                        batch = []
                    yield from self._huge_string_line(item)
                    continue
                batch.append(item)
                if len(batch) >= ITEMS_PER_LINE:
                    yield json.dumps(batch, ensure_ascii=False) + "\n"
                    batch = []
            if batch:
                yield json.dumps(batch, ensure_ascii=False) + "\n"
        elif isinstance(value, dict):
            yield "dict\n"
            entries = iter(value.items())
            # An object per line keeps json's own key rules (int keys become strings).
            while entries_batch := dict(itertools.islice(entries, ITEMS_PER_LINE)):
                yield json.dumps(entries_batch, ensure_ascii=False) + "\n"
        else:
            yield "value\n"
            yield json.dumps(value, ensure_ascii=False) + "\n"

    def _huge_string_line(self, item: str) -> Iterator[str]:
        """A one-item list line for a string longer than a chunk, escaped in slices (JSON escapes each
        character on its own), so the host never holds its whole JSON text."""
        yield '["'
        for start in range(0, len(item), self.chunk_chars):
            yield json.dumps(item[start : start + self.chunk_chars], ensure_ascii=False)[1:-1]
        yield '"]\n'
