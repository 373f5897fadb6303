"""Model prices for cost accounting and ``max_cost``, from ``genai-prices``.

``genai-prices`` is a price database kept current by its maintainers (standard tier, the prompt-size
tier of a short prompt). It is imported on first use only, since loading it takes a moment:
``warm_up()`` starts that in a background thread while the first model call runs. A client plugin
or the user can always pass a price (``backend_kwargs={"price": (input_usd_per_mtok,
output_usd_per_mtok)}``), which wins.
"""

from __future__ import annotations

import functools
import threading
from decimal import Decimal

from rlm_core.clients.base import Price

__all__ = ["price_for", "warm_up"]

# Prices are read at a short prompt: providers with a long-context tier charge more above it.
_PROBE_TOKENS = 1000
# Routing prefixes that name the provider ("openai/gpt-5-mini" through OpenRouter or LiteLLM).
_PROVIDER_ALIASES = {"google": "google", "gemini": "google", "models": None, "anthropic": "anthropic"}


def _per_mtok(price: Decimal) -> float:
    return float(price) * 1_000_000 / _PROBE_TOKENS


@functools.lru_cache(maxsize=1024)
def price_for(model_name: str, provider: str | None = None) -> Price | None:
    """The price of ``model_name`` (USD per million input and output tokens), or None when unknown.

    A routing prefix such as ``openai/`` or ``models/`` is understood; ``provider`` narrows the
    search when a name is ambiguous (``openai``, ``anthropic``, ``google``, ...).
    """
    name = model_name.strip()
    if not name:
        return None
    try:
        from genai_prices import Usage, calc_price
    except ImportError:  # an install without it: no prices, and max_cost asks for one
        return None
    prefix, _, base = name.rpartition("/")
    candidates: list[tuple[str, str | None]] = [(name, provider)]
    if prefix:
        hinted = _PROVIDER_ALIASES.get(prefix.lower(), prefix.lower())
        candidates += [(base, hinted), (base, provider), (base, None)]
    for ref, provider_id in dict.fromkeys(candidates):
        try:
            result = calc_price(
                Usage(input_tokens=_PROBE_TOKENS, output_tokens=_PROBE_TOKENS),
                model_ref=ref,
                provider_id=provider_id,
            )
        except (LookupError, ValueError):
            continue
        return Price(_per_mtok(result.input_price), _per_mtok(result.output_price))
    return None


def warm_up() -> None:
    """Load the price database in a background thread (once), so the first lookup is quick."""
    global _warming
    with _warm_lock:
        if _warming:
            return
        _warming = True
    threading.Thread(target=_import_quietly, name="rlm-prices", daemon=True).start()


def _import_quietly() -> None:
    try:
        import genai_prices  # noqa: F401
    except ImportError:
        return


_warming = False
_warm_lock = threading.Lock()
