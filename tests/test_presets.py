"""Presets of OpenAI-compatible endpoints, checked against the real openai SDK, and the price table."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from rlm_core.clients.base import Price
from rlm_core.clients.presets import (
    PRESETS,
    AzureOpenAIClient,
    PortkeyClient,
    make_preset_client,
)
from rlm_core.clients.pricing import price_for
from rlm_core.errors import ConfigurationError, UnknownNameError
from rlm_core.plugins.builtins import PRESET_NAMES
from rlm_core.testing import LoopbackLLMServer, pytest_plugin
from rlm_core.types import LMRequest, Message

# The kit's fixture (an installed rlm-core also registers it through the pytest11 entry point).
openai_server = pytest_plugin.openai_server

ENV_VARS = {
    "openrouter": "OPENROUTER_API_KEY",
    "portkey": "PORTKEY_API_KEY",
    "litellm": "LITELLM_API_KEY",
    "vllm": "VLLM_API_KEY",
    "azure_openai": "AZURE_OPENAI_API_KEY",
    "gemini": "GEMINI_API_KEY",
}
BASE_URLS = {
    "openrouter": "https://openrouter.ai/api/v1",
    "portkey": "https://api.portkey.ai/v1",
    "litellm": "http://127.0.0.1:4000",
    "vllm": "http://127.0.0.1:8000/v1",
    "gemini": "https://generativelanguage.googleapis.com/v1beta/openai/",
}
AZURE = {"azure_endpoint": "https://example-resource.openai.azure.com", "api_version": "2024-10-21"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*ENV_VARS.values(), "AZURE_OPENAI_ENDPOINT", "OPENAI_API_VERSION", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def ask() -> LMRequest:
    return LMRequest([Message("user", "hi")], max_tokens=5)


def test_the_builtin_plugin_registers_every_preset() -> None:
    assert set(PRESET_NAMES) == set(PRESETS)


@pytest.mark.parametrize("name", sorted(BASE_URLS))
def test_default_base_urls_and_env_keys(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VARS[name], "key-from-env-123")
    client = make_preset_client(name, model_name="m")
    assert client.base_url == BASE_URLS[name]
    assert client.backend == name
    assert client.max_tokens_param == "max_tokens"
    kwargs = client.sdk_client_kwargs()
    if name == "portkey":
        assert kwargs["default_headers"]["x-portkey-api-key"] == "key-from-env-123"
    else:
        assert kwargs["api_key"] == "key-from-env-123"
    assert "key-from-env-123" not in repr(client)


@pytest.mark.parametrize("name", ["openrouter", "portkey", "azure_openai", "gemini"])
def test_a_missing_key_names_the_presets_env_var(name: str) -> None:
    with pytest.raises(ConfigurationError, match=ENV_VARS[name]):
        make_preset_client(name, model_name="m", **(AZURE if name == "azure_openai" else {}))


@pytest.mark.parametrize("name", ["litellm", "vllm"])
def test_local_servers_need_no_key(name: str) -> None:
    client = make_preset_client(name, model_name="m")
    assert client.sdk_client_kwargs()["api_key"] == "EMPTY"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_sdk_kwargs_fit_the_real_sdk_classes(name: str) -> None:
    extra: dict[str, Any] = AZURE if name == "azure_openai" else {}
    client = make_preset_client(
        name, model_name="m", api_key="k", timeout=3, max_retries=1, default_headers={"x-a": "b"}, **extra
    )
    for cls in client._sdk_classes():
        assert set(client.sdk_client_kwargs()) <= set(inspect.signature(cls.__init__).parameters), cls


@pytest.mark.parametrize("name", ["openrouter", "gemini", "litellm", "vllm"])
def test_round_trip_through_a_preset(name: str, openai_server: LoopbackLLMServer) -> None:
    openai_server.api_key = "preset-key"
    openai_server.set_replies(["pong"])
    client = make_preset_client(
        name, model_name="some/model", api_key="preset-key", base_url=openai_server.base_url
    )
    response = client.complete(ask())
    assert response.text == "pong" and response.usage.output_tokens == openai_server.total_output_tokens
    assert openai_server.requests[0]["max_tokens"] == 5


def test_portkey_headers_reach_the_server(openai_server: LoopbackLLMServer) -> None:
    client = make_preset_client(
        "portkey",
        model_name="gpt-4o-mini",
        api_key="pk-portkey-secret-123",
        virtual_key="vk-1",
        provider="openai",
        base_url=openai_server.base_url,
    )
    assert isinstance(client, PortkeyClient)
    assert client.complete(ask()).text
    headers = openai_server.request_headers[0]
    assert headers["x-portkey-api-key"] == "pk-portkey-secret-123"
    assert headers["x-portkey-virtual-key"] == "vk-1" and headers["x-portkey-provider"] == "openai"
    assert "pk-portkey-secret-123" not in headers["authorization"]
    assert "pk-portkey-secret-123" not in repr(client)


def test_azure_uses_the_azure_sdk_classes_and_deployment(
    openai_server: LoopbackLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import openai

    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-key-123")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", openai_server.root_url)
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")
    openai_server.api_key = "azure-key-123"
    client = make_preset_client("azure_openai", model_name="my-deployment")
    assert isinstance(client, AzureOpenAIClient)
    assert client._sdk_classes() == (openai.AzureOpenAI, openai.AsyncAzureOpenAI)
    assert client.max_tokens_param == "max_completion_tokens"
    assert client.complete(ask()).text
    assert openai_server.requests[0]["path"] == "/openai/deployments/my-deployment/chat/completions"
    assert openai_server.request_headers[0]["api-key"] == "azure-key-123"
    assert "azure-key-123" not in repr(client)


@pytest.mark.parametrize(
    ("missing", "match"), [("azure_endpoint", "AZURE_OPENAI_ENDPOINT"), ("api_version", "OPENAI_API_VERSION")]
)
def test_azure_settings_are_required(missing: str, match: str) -> None:
    kwargs = {k: v for k, v in AZURE.items() if k != missing}
    with pytest.raises(ConfigurationError, match=match):
        AzureOpenAIClient(model_name="d", api_key="k", **kwargs)


def test_an_unknown_preset_is_an_unknown_name_error() -> None:
    with pytest.raises(UnknownNameError, match="openrouter"):
        make_preset_client("nope", model_name="m")


# -- prices ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "same_as"),
    [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai/gpt-5-mini", "gpt-5-mini"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("models/gemini-2.5-pro", "gemini-2.5-pro"),
    ],
)
def test_dated_and_routed_names_price_like_their_model(model: str, same_as: str) -> None:
    price = price_for(model)
    assert price is not None and price == price_for(same_as)


def test_prices_come_from_the_price_database_at_a_short_prompt() -> None:
    from genai_prices import Usage, calc_price

    reference = calc_price(Usage(input_tokens=1000, output_tokens=1000), model_ref="claude-sonnet-4-5")
    price = price_for("claude-sonnet-4-5")
    assert price is not None
    assert price.input_per_mtok == pytest.approx(float(reference.input_price) * 1000)
    assert price.output_per_mtok == pytest.approx(float(reference.output_price) * 1000)


@pytest.mark.parametrize("model", ["my-finetune", "local", ""])
def test_unknown_models_have_no_price(model: str) -> None:
    assert price_for(model) is None


def test_cost_is_usd_per_million_tokens() -> None:
    from rlm_core.types import TokenUsage

    assert Price(2.0, 8.0).cost(TokenUsage(1_000_000, 500_000)) == pytest.approx(6.0)
    for model in ("gpt-5-mini", "claude-haiku-4-5", "gemini-2.5-flash"):
        price = price_for(model)
        assert price is not None and 0 < price.input_per_mtok <= price.output_per_mtok
