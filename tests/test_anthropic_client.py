"""The built-in anthropic client: the real anthropic SDK against the loopback server."""

from __future__ import annotations

import asyncio
import inspect
import socket
from typing import Any

import pytest

from rlm_core.clients.anthropic_client import DEFAULT_MAX_TOKENS, AnthropicClient, to_anthropic_messages
from rlm_core.clients.pricing import price_for
from rlm_core.errors import ConfigurationError, ProviderError
from rlm_core.testing import LoopbackLLMServer, pytest_plugin
from rlm_core.testing.tokens import count_message_tokens
from rlm_core.types import LMRequest, Message

KEY = "sk-ant-loopback-secret-0123456789"

# The kit's fixture (an installed rlm-core also registers it through the pytest11 entry point).
anthropic_server = pytest_plugin.anthropic_server


@pytest.fixture
def server(anthropic_server: LoopbackLLMServer) -> LoopbackLLMServer:
    anthropic_server.api_key = KEY
    return anthropic_server


def make(server: LoopbackLLMServer, **kwargs: Any) -> AnthropicClient:
    kwargs.setdefault("model_name", "claude-haiku-4-5-20251001")
    kwargs.setdefault("api_key", KEY)
    kwargs.setdefault("base_url", server.anthropic_base_url)
    return AnthropicClient(**kwargs)


def ask(text: str = "What is 2+2?", max_tokens: int | None = None) -> LMRequest:
    return LMRequest([Message("system", "Answer briefly."), Message("user", text)], max_tokens=max_tokens)


def test_sync_round_trip_system_field_usage_and_cost(server: LoopbackLLMServer) -> None:
    server.set_replies(["4"])
    client = make(server)
    response = client.complete(ask())
    assert response.text == "4"
    assert response.finish_reason == "end_turn"
    assert response.model == "claude-haiku-4-5-20251001"
    body = server.requests[0]
    assert body["system"] == "Answer briefly."
    assert body["messages"] == [{"role": "user", "content": "What is 2+2?"}]
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS
    headers = server.request_headers[0]
    assert KEY in (headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer "))
    assert response.usage.input_tokens == server.total_input_tokens == count_message_tokens(ask().messages)
    assert response.usage.output_tokens == server.total_output_tokens == 1
    price = price_for("claude-haiku-4-5")
    assert price is not None and response.cost == pytest.approx(price.cost(response.usage))
    client.close()


async def test_async_round_trip(server: LoopbackLLMServer) -> None:
    server.set_replies(["a", "b"])
    client = make(server)
    replies = await asyncio.gather(client.acomplete(ask()), client.acomplete(ask()))
    assert sorted(r.text for r in replies) == ["a", "b"]
    assert sum(r.usage.output_tokens for r in replies) == server.total_output_tokens
    await client.aclose()


def test_one_client_serves_several_event_loops_in_sequence(server: LoopbackLLMServer) -> None:
    client = make(server)
    assert asyncio.run(client.acomplete(ask())).text == asyncio.run(client.acomplete(ask())).text


def test_request_max_tokens_wins_over_the_default_cap(server: LoopbackLLMServer) -> None:
    server.set_replies(["w" * 400])
    client = make(server, max_tokens=30)
    capped = client.complete(ask(max_tokens=5))
    default = client.complete(ask())
    assert [r["max_tokens"] for r in server.requests] == [5, 30]
    assert capped.finish_reason == "max_tokens" and capped.usage.output_tokens == 5
    assert default.usage.output_tokens == 30


@pytest.mark.parametrize("use_async", [False, True])
def test_streaming_returns_text_and_usage(server: LoopbackLLMServer, use_async: bool) -> None:
    server.set_replies(["a streamed reply, long enough to arrive in pieces"])
    client = make(server, stream=True)
    response = asyncio.run(client.acomplete(ask())) if use_async else client.complete(ask())
    assert server.requests[0]["stream"] is True
    assert response.text == "a streamed reply, long enough to arrive in pieces"
    assert response.finish_reason == "end_turn"
    assert response.usage.input_tokens == server.total_input_tokens
    assert response.usage.output_tokens == server.total_output_tokens


def test_temperature_and_extra_params_pass_through(server: LoopbackLLMServer) -> None:
    make(server, temperature=0.0, top_k=5, metadata={"user_id": "u"}).complete(ask())
    body = server.requests[0]
    assert (body["temperature"], body["top_k"], body["metadata"]) == (0.0, 5, {"user_id": "u"})


def test_messages_are_shaped_for_the_messages_api() -> None:
    system, turns = to_anthropic_messages(
        [
            Message("system", "one"),
            Message("assistant", "hello"),
            Message("user", "a"),
            Message("user", "b"),
            Message("system", "two"),
            Message("assistant", ""),
        ]
    )
    assert system == "one\n\ntwo"
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[2]["content"] == "a\n\nb"
    assert turns[0]["content"].strip() and turns[3]["content"].strip()  # no empty text blocks
    assert to_anthropic_messages([Message("system", "only")])[1][0]["role"] == "user"


def test_cache_tokens_count_as_input() -> None:
    from anthropic.types import Usage

    from rlm_core.clients.anthropic_client import _anthropic_usage

    usage = Usage(
        input_tokens=10, output_tokens=3, cache_creation_input_tokens=100, cache_read_input_tokens=1000
    )
    assert (_anthropic_usage(usage).input_tokens, _anthropic_usage(usage).output_tokens) == (1110, 3)
    assert _anthropic_usage(None).total_tokens == 0


def test_sdk_retries_then_success(server: LoopbackLLMServer) -> None:
    server.fail_next(1, status=529)
    assert make(server, max_retries=1).complete(ask()).text
    assert len(server.requests) == 2


def test_overload_without_retries_is_retryable(server: LoopbackLLMServer) -> None:
    server.fail_next(1, status=529)
    with pytest.raises(ProviderError, match="HTTP 529") as info:
        make(server, max_retries=0).complete(ask())
    assert info.value.retryable and info.value.client == "anthropic"


def test_401_names_the_env_var_and_never_the_key(server: LoopbackLLMServer) -> None:
    wrong = "sk-ant-wrong-abcdefghijklmnop"
    client = make(server, api_key=wrong, max_retries=0)
    with pytest.raises(ProviderError) as info:
        client.complete(ask())
    assert "HTTP 401" in str(info.value) and "ANTHROPIC_API_KEY" in str(info.value)
    for text in (str(info.value), repr(client), str(client), repr(vars(client))):
        assert wrong not in text


def test_connection_refused_is_a_provider_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = AnthropicClient(model_name="c", api_key=KEY, base_url=f"http://127.0.0.1:{port}", max_retries=0)
    with pytest.raises(ProviderError, match="could not connect"):
        client.complete(ask())


def test_timeout_is_passed_to_the_sdk(server: LoopbackLLMServer) -> None:
    server.slow_next(1, delay=30)
    with pytest.raises(ProviderError, match=r"no reply within 0\.3s"):
        make(server, timeout=0.3, max_retries=0).complete(ask())


def test_missing_api_key_names_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
        AnthropicClient(model_name="claude-haiku-4-5")
    with pytest.raises(ConfigurationError, match="model_name"):
        AnthropicClient(api_key=KEY)


def test_an_auth_token_replaces_the_key(server: LoopbackLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", KEY)
    client = AnthropicClient(model_name="c", base_url=server.anthropic_base_url)
    assert client.complete(ask()).text
    assert server.request_headers[0]["authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(vars(client))


def test_sdk_kwargs_fit_the_real_constructors(server: LoopbackLLMServer) -> None:
    import anthropic

    client = make(server, timeout=5, max_retries=1, default_headers={"x-a": "b"})
    for cls in (anthropic.Anthropic, anthropic.AsyncAnthropic):
        assert set(client.sdk_client_kwargs()) <= set(inspect.signature(cls.__init__).parameters)


def test_the_builtin_plugin_builds_this_client(server: LoopbackLLMServer) -> None:
    from rlm_core.plugins.registry import get_registry

    client = (
        get_registry()
        .get("clients", "anthropic")
        .factory(model_name="c", api_key=KEY, base_url=server.anthropic_base_url)
    )
    assert isinstance(client, AnthropicClient) and client.complete(ask()).text
