"""The built-in openai client: the real openai SDK against the loopback server."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rlm_core.clients.base import Price
from rlm_core.clients.openai_client import OpenAIClient
from rlm_core.clients.pricing import price_for
from rlm_core.errors import ConfigurationError, ProviderError
from rlm_core.testing import LoopbackLLMServer, pytest_plugin
from rlm_core.testing.tokens import count_message_tokens
from rlm_core.types import LMRequest, Message

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-loopback-secret-0123456789"

# The kit's fixture (an installed rlm-core also registers it through the pytest11 entry point).
openai_server = pytest_plugin.openai_server


@pytest.fixture
def server(openai_server: LoopbackLLMServer) -> LoopbackLLMServer:
    openai_server.api_key = KEY
    return openai_server


def make(server: LoopbackLLMServer, **kwargs: Any) -> OpenAIClient:
    kwargs.setdefault("model_name", "gpt-4o-mini")
    kwargs.setdefault("api_key", KEY)
    kwargs.setdefault("base_url", server.base_url)
    return OpenAIClient(**kwargs)


def ask(text: str = "What is 2+2?", max_tokens: int | None = None) -> LMRequest:
    return LMRequest([Message("system", "Answer briefly."), Message("user", text)], max_tokens=max_tokens)


def test_sync_round_trip_with_system_prompt_usage_and_cost(server: LoopbackLLMServer) -> None:
    server.set_replies(["4"])
    client = make(server)
    response = client.complete(ask())
    assert response.text == "4"
    assert response.finish_reason == "stop"
    assert response.model == "gpt-4o-mini"
    assert response.latency > 0
    body = server.requests[0]
    assert body["messages"][0] == {"role": "system", "content": "Answer briefly."}
    assert body["messages"][1] == {"role": "user", "content": "What is 2+2?"}
    assert response.usage.input_tokens == server.total_input_tokens == count_message_tokens(ask().messages)
    assert response.usage.output_tokens == server.total_output_tokens == 1
    price = price_for("gpt-4o-mini")
    assert price is not None and response.cost == pytest.approx(price.cost(response.usage))
    client.close()


async def test_async_round_trip(server: LoopbackLLMServer) -> None:
    server.set_replies(["a", "b", "c"])
    client = make(server)
    replies = await asyncio.gather(*(client.acomplete(ask()) for _ in range(3)))
    assert sorted(r.text for r in replies) == ["a", "b", "c"]
    assert (
        sum(r.usage.total_tokens for r in replies) == server.total_input_tokens + server.total_output_tokens
    )
    await client.aclose()


def test_one_client_serves_several_event_loops_in_sequence(server: LoopbackLLMServer) -> None:
    client = make(server)
    first = asyncio.run(client.acomplete(ask()))
    second = asyncio.run(client.acomplete(ask()))
    assert first.text == second.text and len(server.requests) == 2


def test_request_max_tokens_wins_and_custom_endpoints_get_max_tokens(server: LoopbackLLMServer) -> None:
    server.set_replies(["z" * 400])
    client = make(server, max_tokens=50)
    assert client.max_tokens_param == "max_tokens"
    capped = client.complete(ask(max_tokens=7))
    default = client.complete(ask())
    assert [r.get("max_tokens") for r in server.requests] == [7, 50]
    assert "max_completion_tokens" not in server.requests[0]
    assert capped.finish_reason == "length" and capped.usage.output_tokens == 7
    assert default.usage.output_tokens == 50


def test_max_tokens_param_override_reaches_the_server(server: LoopbackLLMServer) -> None:
    client = make(server, max_tokens_param="max_completion_tokens")
    client.complete(ask(max_tokens=9))
    assert server.requests[0]["max_completion_tokens"] == 9 and "max_tokens" not in server.requests[0]


def test_the_official_endpoint_uses_max_completion_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert OpenAIClient(model_name="o3", api_key=KEY).max_tokens_param == "max_completion_tokens"
    client = OpenAIClient(model_name="o3", api_key=KEY, base_url="https://api.openai.com/v1")
    assert client.max_tokens_param == "max_completion_tokens"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    assert OpenAIClient(model_name="o3", api_key=KEY).max_tokens_param == "max_tokens"


def test_temperature_and_extra_params_pass_through(server: LoopbackLLMServer) -> None:
    client = make(server, temperature=0.25, top_p=0.5, reasoning_effort="low", seed=3)
    client.complete(ask())
    body = server.requests[0]
    assert (body["temperature"], body["top_p"], body["reasoning_effort"], body["seed"]) == (
        0.25,
        0.5,
        "low",
        3,
    )


@pytest.mark.parametrize("use_async", [False, True])
def test_streaming_returns_text_and_usage(server: LoopbackLLMServer, use_async: bool) -> None:
    server.set_replies(["a streamed reply that is long enough to be split"])
    client = make(server, stream=True)
    response = (
        asyncio.run(client.acomplete(ask(max_tokens=6))) if use_async else client.complete(ask(max_tokens=6))
    )
    body = server.requests[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert response.text == "a streamed reply that is "[:24]
    assert response.finish_reason == "length"
    assert response.usage.output_tokens == server.total_output_tokens == 6
    assert response.usage.input_tokens == server.total_input_tokens


def test_sdk_retries_are_the_retry_layer(server: LoopbackLLMServer) -> None:
    server.fail_next(2, status=500)
    assert make(server, max_retries=2).complete(ask()).text
    assert len(server.requests) == 3


def test_a_failure_without_retries_is_a_retryable_provider_error(server: LoopbackLLMServer) -> None:
    server.fail_next(1, status=429)
    with pytest.raises(ProviderError) as info:
        make(server, max_retries=0).complete(ask())
    assert info.value.retryable and info.value.client == "openai" and info.value.model == "gpt-4o-mini"
    assert "HTTP 429" in str(info.value) and "max_retries" in str(info.value)
    assert len(server.requests) == 1


def test_401_names_the_env_var_and_never_the_key(server: LoopbackLLMServer) -> None:
    wrong = "sk-wrong-key-abcdefghijkl"
    client = make(server, api_key=wrong, max_retries=0)
    with pytest.raises(ProviderError) as info:
        client.complete(ask())
    message = str(info.value)
    assert "HTTP 401" in message and "OPENAI_API_KEY" in message
    assert not info.value.retryable
    for text in (message, repr(info.value), repr(client), str(client), repr(vars(client))):
        assert wrong not in text


def test_404_points_at_model_name_and_base_url(server: LoopbackLLMServer) -> None:
    client = make(server, base_url=server.root_url + "/nowhere", max_retries=0)
    with pytest.raises(ProviderError, match=r"HTTP 404.*model_name and base_url"):
        client.complete(ask())


def test_connection_refused_is_a_provider_error() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = OpenAIClient(model_name="m", api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
    with pytest.raises(ProviderError, match="could not connect") as info:
        client.complete(ask())
    assert info.value.retryable


def test_timeout_is_passed_to_the_sdk(server: LoopbackLLMServer) -> None:
    server.slow_next(1, delay=30)
    client = make(server, timeout=0.3, max_retries=0)
    with pytest.raises(ProviderError, match=r"no reply within 0\.3s") as info:
        client.complete(ask())
    assert info.value.retryable


def test_dropped_connection_and_malformed_reply_are_provider_errors(server: LoopbackLLMServer) -> None:
    client = make(server, max_retries=0)
    server.drop_next()
    with pytest.raises(ProviderError, match="could not connect"):
        client.complete(ask())
    server.malformed_next()
    with pytest.raises(ProviderError, match="not the expected JSON"):
        client.complete(ask())


def test_missing_api_key_names_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        OpenAIClient(model_name="gpt-4o")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    client = OpenAIClient(model_name="gpt-4o")
    assert client.sdk_client_kwargs()["api_key"] == KEY
    assert KEY not in repr(client)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "model_name"),
        ({"model_name": "m", "model": "m"}, "model"),
        ({"model_name": "m", "max_tokens": 0}, "max_tokens"),
        ({"model_name": "m", "max_retries": -1}, "max_retries"),
        ({"model_name": "m", "timeout": "soon"}, "timeout"),
        ({"model_name": "m", "price": "cheap"}, "price"),
        ({"model_name": "m", "max_tokens_param": "tokens"}, "max_tokens_param"),
    ],
)
def test_invalid_settings_are_configuration_errors(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        OpenAIClient(api_key=KEY, **kwargs)


def test_price_override_and_unknown_models(server: LoopbackLLMServer) -> None:
    assert make(server, model_name="my-local-model").complete(ask()).cost is None
    response = make(server, model_name="my-local-model", price=(1.0, 2.0)).complete(ask())
    assert response.cost == pytest.approx(Price(1.0, 2.0).cost(response.usage))


def test_the_sdk_client_is_created_once_and_recreated_after_close(server: LoopbackLLMServer) -> None:
    client = make(server)
    client.complete(ask())
    first = client._sync_client
    client.complete(ask())
    assert client._sync_client is first
    client.close()
    assert client.complete(ask()).text and client._sync_client is not first


def test_sdk_kwargs_fit_the_real_constructors(server: LoopbackLLMServer) -> None:
    import inspect

    import openai

    client = make(
        server, timeout=5, max_retries=1, default_headers={"x-a": "b"}, client_kwargs={"organization": "o"}
    )
    for cls in (openai.OpenAI, openai.AsyncOpenAI):
        assert set(client.sdk_client_kwargs()) <= set(inspect.signature(cls.__init__).parameters)


def test_the_builtin_plugin_builds_this_client(server: LoopbackLLMServer) -> None:
    from rlm_core.plugins.registry import get_registry

    client = (
        get_registry().get("clients", "openai").factory(model_name="m", api_key=KEY, base_url=server.base_url)
    )
    assert isinstance(client, OpenAIClient) and client.complete(ask()).text


def test_import_rlm_core_does_not_import_the_sdks() -> None:
    code = (
        "import sys, rlm_core, rlm_core.plugins.builtins; "
        "print(sorted(m for m in ('openai', 'anthropic') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "[]"


def test_a_client_whose_constructor_failed_still_has_a_repr() -> None:
    half_built = OpenAIClient.__new__(OpenAIClient)  # as pytest shows it after __init__ raised
    assert repr(half_built) == "OpenAIClient(model_name='', stream=False)"
