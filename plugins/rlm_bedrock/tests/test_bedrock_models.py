"""Prices and context windows by model id, inference profile id or ARN."""

from __future__ import annotations

import pytest
from rlm_bedrock.models import base_model_id, context_window_for, price_for

from rlm_core.clients.base import Price


@pytest.mark.parametrize(
    "model_id",
    [
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "apac.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    ],
)
def test_profiles_and_versions_resolve_to_the_same_model(model_id: str) -> None:
    assert base_model_id(model_id) == "anthropic.claude-sonnet-4-5-20250929-v1"
    assert price_for(model_id) == Price(3.0, 15.0)
    assert context_window_for(model_id) == 200_000


@pytest.mark.parametrize(
    ("model_id", "price", "window"),
    [
        ("amazon.nova-micro-v1:0", Price(0.035, 0.14), 128_000),
        ("us.amazon.nova-pro-v1:0", Price(0.8, 3.2), 300_000),
        ("us.meta.llama3-3-70b-instruct-v1:0", Price(0.72, 0.72), 128_000),
        ("mistral.mixtral-8x7b-instruct-v0:1", Price(0.45, 0.7), 32_000),
        ("anthropic.claude-3-haiku-20240307-v1:0:200k", Price(0.25, 1.25), 200_000),
    ],
)
def test_common_families_have_prices_and_windows(model_id: str, price: Price, window: int) -> None:
    assert (price_for(model_id), context_window_for(model_id)) == (price, window)


def test_unknown_models_have_no_price() -> None:
    assert price_for("acme.secret-model-v1:0") is None
    assert context_window_for("acme.secret-model-v1:0") is None
