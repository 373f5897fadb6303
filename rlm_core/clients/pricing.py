"""Indicative prices of well-known OpenAI, Anthropic and Gemini models, for cost accounting.

The table is indicative only: list prices from the providers' public price pages (standard tier,
no batch/cache discounts, Gemini's prompt-size tier at or below 200k tokens) at the time of writing.
Prices change; pass ``backend_kwargs={"price": Price(input_per_mtok, output_per_mtok)}`` to override.
"""

from __future__ import annotations

import re

from rlm_core.clients.base import Price

__all__ = ["PRICES", "price_for"]

# USD per million tokens: (input, output).
_TABLE: dict[str, tuple[float, float]] = {
    # OpenAI
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o1": (15.00, 60.00),
    "o3": (2.00, 8.00),
    "o3-pro": (20.00, 80.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    # Anthropic
    "claude-opus-4-5": (5.00, 25.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-opus-4": (15.00, 75.00),
    "claude-opus-4-0": (15.00, 75.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-sonnet-4-0": (3.00, 15.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-opus": (15.00, 75.00),
    "claude-3-haiku": (0.25, 1.25),
    # Google Gemini
    "gemini-2.5-pro": (1.25, 10.00),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.5-flash-lite": (0.10, 0.40),
    "gemini-2.0-flash": (0.10, 0.40),
    "gemini-2.0-flash-lite": (0.075, 0.30),
}

PRICES: dict[str, Price] = {name: Price(inp, out) for name, (inp, out) in _TABLE.items()}

# What may follow a known name in a dated or aliased model id: "-2024-08-06", "-20250514", "-latest",
# "-preview-05-20". A word such as "-pro" or a version such as "-6" names another model, so no match.
_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2}|latest|preview[\w-]*|exp[\w-]*)")


def price_for(model_name: str) -> Price | None:
    """The indicative price of ``model_name``, or ``None`` when unknown.

    Matched case-insensitively by exact name, then by the longest known name followed by a date or
    ``-latest`` suffix. A routing prefix such as ``openai/`` or ``models/`` is ignored.
    """
    name = model_name.strip().lower().rsplit("/", 1)[-1]
    if name in PRICES:
        return PRICES[name]
    best: str | None = None
    for known in PRICES:
        matches = name.startswith(known) and _SUFFIX.fullmatch(name[len(known) :])
        if matches and (best is None or len(known) > len(best)):
            best = known
    return PRICES[best] if best is not None else None
