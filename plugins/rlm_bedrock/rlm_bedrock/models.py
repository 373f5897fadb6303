"""Indicative prices and context windows of common Bedrock models, keyed by model id.

Prices are Bedrock's on-demand list prices (USD per million tokens, standard tier, us-east-1, no batch
or cache discounts) at the time of writing; they change and differ by region. Pass
``backend_kwargs={"price": (input, output)}`` or a ``Price`` to override.
"""

from __future__ import annotations

import re

from rlm_core.clients.base import Price

__all__ = ["CONTEXT_WINDOWS", "PRICES", "base_model_id", "context_window_for", "price_for"]

# Keys are base model ids without the ":N" version suffix: see base_model_id().
_PRICE_TABLE: dict[str, tuple[float, float]] = {
    # Anthropic
    "anthropic.claude-opus-4-5-20251101-v1": (5.00, 25.00),
    "anthropic.claude-opus-4-1-20250805-v1": (15.00, 75.00),
    "anthropic.claude-opus-4-20250514-v1": (15.00, 75.00),
    "anthropic.claude-sonnet-4-5-20250929-v1": (3.00, 15.00),
    "anthropic.claude-sonnet-4-20250514-v1": (3.00, 15.00),
    "anthropic.claude-haiku-4-5-20251001-v1": (1.00, 5.00),
    "anthropic.claude-3-7-sonnet-20250219-v1": (3.00, 15.00),
    "anthropic.claude-3-5-sonnet-20241022-v2": (3.00, 15.00),
    "anthropic.claude-3-5-sonnet-20240620-v1": (3.00, 15.00),
    "anthropic.claude-3-5-haiku-20241022-v1": (0.80, 4.00),
    "anthropic.claude-3-opus-20240229-v1": (15.00, 75.00),
    "anthropic.claude-3-haiku-20240307-v1": (0.25, 1.25),
    # Amazon Nova
    "amazon.nova-premier-v1": (2.50, 12.50),
    "amazon.nova-pro-v1": (0.80, 3.20),
    "amazon.nova-lite-v1": (0.06, 0.24),
    "amazon.nova-micro-v1": (0.035, 0.14),
    # Meta Llama
    "meta.llama4-maverick-17b-instruct-v1": (0.24, 0.97),
    "meta.llama4-scout-17b-instruct-v1": (0.17, 0.66),
    "meta.llama3-3-70b-instruct-v1": (0.72, 0.72),
    "meta.llama3-2-90b-instruct-v1": (0.72, 0.72),
    "meta.llama3-2-11b-instruct-v1": (0.16, 0.16),
    "meta.llama3-2-3b-instruct-v1": (0.15, 0.15),
    "meta.llama3-2-1b-instruct-v1": (0.10, 0.10),
    "meta.llama3-1-405b-instruct-v1": (2.40, 2.40),
    "meta.llama3-1-70b-instruct-v1": (0.72, 0.72),
    "meta.llama3-1-8b-instruct-v1": (0.22, 0.22),
    # Mistral
    "mistral.pixtral-large-2502-v1": (2.00, 6.00),
    "mistral.mistral-large-2407-v1": (2.00, 6.00),
    "mistral.mistral-large-2402-v1": (4.00, 12.00),
    "mistral.mistral-small-2402-v1": (1.00, 3.00),
    "mistral.mixtral-8x7b-instruct-v0": (0.45, 0.70),
    "mistral.mistral-7b-instruct-v0": (0.15, 0.20),
    # Others served on demand
    "deepseek.r1-v1": (1.35, 5.40),
    "qwen.qwen3-coder-30b-a3b-v1": (0.15, 0.60),
    "qwen.qwen3-32b-v1": (0.15, 0.60),
    "qwen.qwen3-235b-a22b-2507-v1": (0.22, 0.88),
    "openai.gpt-oss-120b-1": (0.15, 0.60),
    "openai.gpt-oss-20b-1": (0.07, 0.30),
}

PRICES: dict[str, Price] = {name: Price(inp, out) for name, (inp, out) in _PRICE_TABLE.items()}

# Tokens per request as Bedrock serves the model by default (no long-context beta headers).
CONTEXT_WINDOWS: dict[str, int] = {
    **{name: 200_000 for name in _PRICE_TABLE if name.startswith("anthropic.")},
    "amazon.nova-premier-v1": 1_000_000,
    "amazon.nova-pro-v1": 300_000,
    "amazon.nova-lite-v1": 300_000,
    "amazon.nova-micro-v1": 128_000,
    **{name: 128_000 for name in _PRICE_TABLE if name.startswith("meta.llama3-")},
    "mistral.pixtral-large-2502-v1": 128_000,
    "mistral.mistral-large-2407-v1": 128_000,
    "mistral.mistral-large-2402-v1": 32_000,
    "mistral.mistral-small-2402-v1": 32_000,
    "mistral.mixtral-8x7b-instruct-v0": 32_000,
    "mistral.mistral-7b-instruct-v0": 32_000,
    "deepseek.r1-v1": 128_000,
    "openai.gpt-oss-120b-1": 128_000,
    "openai.gpt-oss-20b-1": 128_000,
}

# Cross-region inference profiles prefix a model id with the geography that may serve it.
_PROFILE_PREFIX = re.compile(r"^(?:us|eu|apac|global|us-gov|jp|au|ca)\.")
# Version and throughput suffixes: "...-v1:0", "...-v2:0", "...-v1:0:200k".
_VERSION_SUFFIX = re.compile(r"(?::[0-9a-z]+)+$")


def base_model_id(model_id: str) -> str:
    """The table key of a model id, inference profile id or ARN.

    ``us.anthropic.claude-sonnet-4-5-20250929-v1:0`` and
    ``arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.anthropic.claude-...-v1:0`` both become
    ``anthropic.claude-...-v1``.
    """
    name = model_id.strip().lower()
    if name.startswith("arn:"):
        name = name.rsplit("/", 1)[-1]
    name = _PROFILE_PREFIX.sub("", name)
    return _VERSION_SUFFIX.sub("", name)


def price_for(model_id: str) -> Price | None:
    """The indicative on-demand price of ``model_id`` (any profile prefix or version), or ``None``."""
    return PRICES.get(base_model_id(model_id))


def context_window_for(model_id: str) -> int | None:
    """The model's context window in tokens, or ``None`` when unknown."""
    return CONTEXT_WINDOWS.get(base_model_id(model_id))
