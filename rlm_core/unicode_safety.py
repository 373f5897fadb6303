"""Text that can always be encoded: lone surrogates (from a decoded file, a model, a user) replaced
before text leaves the process as UTF-8 (provider requests), where they would raise."""

from __future__ import annotations

import re

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def without_lone_surrogates(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD (the text itself when it has none)."""
    return _LONE_SURROGATE.sub(REPLACEMENT, text) if has_lone_surrogate(text) else text
