"""The built-in openai client against the loopback server, on both transports: the real openai SDK
("sdk") and the lean HTTP path ("http"). Every test runs on each; the last ones compare the two."""

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


@pytest.fixture(autouse=True, params=["http", "sdk"])
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    # Through the documented process-wide default, so clients built inside a test use it too.
    monkeypatch.setenv("RLM_OPENAI_TRANSPORT", request.param)
    return str(request.param)


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


def test_the_transport_in_use(server: LoopbackLLMServer, transport: str) -> None:
    assert make(server).transport == transport
    # What only the SDK does stays on the SDK whatever the default.
    assert make(server, client_kwargs={"default_query": {"a": "b"}}).transport == "sdk"
    assert make(server, transport="sdk").transport == "sdk"
    with pytest.raises(ConfigurationError, match="default_query"):
        make(server, transport="http", client_kwargs={"default_query": {"a": "b"}})
    with pytest.raises(ConfigurationError, match="transport"):
        make(server, transport="curl")


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


# -- the two transports side by side ---------------------------------------------------------

HEADERS_SERVERS_READ = ("authorization", "openai-organization", "openai-project", "x-team", "x-call")


def test_both_transports_send_the_headers_servers_act_on(
    server: LoopbackLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-env")
    seen = []
    for transport in ("sdk", "http"):
        server.reset()
        client = make(
            server,
            transport=transport,
            default_headers={"x-team": "blue"},
            client_kwargs={"organization": "org-1"},
            extra_headers={"x-call": "one"},
        )
        client.complete(ask())
        asyncio.run(client.acomplete(ask()))
        for headers in server.request_headers:
            seen.append((transport, {name: headers.get(name) for name in HEADERS_SERVERS_READ}))
    expected = {
        "authorization": f"Bearer {KEY}",
        "openai-organization": "org-1",
        "openai-project": "proj-env",
        "x-team": "blue",
        "x-call": "one",
    }
    assert [h for _, h in seen] == [expected] * 4, seen


def test_the_base_url_comes_from_openai_base_url(
    server: LoopbackLLMServer, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    client = OpenAIClient(model_name="m", api_key=KEY)
    assert client.complete(ask()).text and len(server.requests) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_both_transports_give_the_same_reply_fields(server: LoopbackLLMServer, stream: bool) -> None:
    server.token_scores = lambda body, text: [("yes", -0.1), ("no", -2.5)]
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    request = LMRequest([Message("user", "Pick.")], max_tokens=5, response_schema=schema, top_logprobs=2)
    server.set_replies(["yes it is a long reply"])
    replies, bodies = [], []
    for transport in ("sdk", "http"):
        server.reset()
        client = make(server, transport=transport, stream=stream)
        replies.append(client.complete(request))
        replies.append(asyncio.run(client.acomplete(request)))
        bodies += server.requests
    fields = [(r.text, r.usage, r.model, r.finish_reason, r.top_logprobs) for r in replies]
    assert fields[0][4] == (("yes", -0.1), ("no", -2.5)) and fields[0][3] == "length"
    assert fields == [fields[0]] * 4
    assert all(b["response_format"] == bodies[0]["response_format"] for b in bodies)
    assert bodies[0]["response_format"]["json_schema"]["schema"] == schema


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        *[(400, False), (401, False), (403, False), (404, False), (408, True), (409, True)],
        *[(422, False), (429, True), (500, True), (502, True), (503, True)],
    ],
)
def test_both_transports_raise_the_same_error_for_each_status(
    server: LoopbackLLMServer, status: int, retryable: bool
) -> None:
    errors = []
    for transport in ("sdk", "http"):
        server.reset()
        server.fail_next(1, status=status)
        with pytest.raises(ProviderError) as info:
            make(server, transport=transport, max_retries=0).complete(ask())
        errors.append((str(info.value), info.value.retryable))
    assert errors[0] == errors[1] and errors[0][1] is retryable, errors
    assert f"HTTP {status}" in errors[0][0] and "injected" in errors[0][0]


def test_both_transports_do_not_retry_when_the_server_asks_for_more_than_two_minutes(
    server: LoopbackLLMServer,
) -> None:
    for transport in ("sdk", "http"):
        server.reset()
        server.rate_limit_next(1, retry_after=500)
        with pytest.raises(ProviderError, match="HTTP 429"):
            make(server, transport=transport, max_retries=3).complete(ask())
        assert len(server.requests) == 1, transport


def test_the_lean_transport_matches_the_installed_sdks_defaults() -> None:
    import openai
    from openai import _constants

    from rlm_core.clients import openai_http

    assert openai_http.DEFAULT_MAX_RETRIES == openai.DEFAULT_MAX_RETRIES
    assert _constants.DEFAULT_TIMEOUT.read == openai_http.DEFAULT_TIMEOUT
    assert _constants.DEFAULT_TIMEOUT.connect == openai_http.DEFAULT_CONNECT_TIMEOUT
    limits = _constants.DEFAULT_CONNECTION_LIMITS
    assert limits.max_connections == openai_http.MAX_CONNECTIONS
    assert limits.max_keepalive_connections == openai_http.MAX_KEEPALIVE_CONNECTIONS
    assert _constants.INITIAL_RETRY_DELAY == openai_http.INITIAL_RETRY_DELAY
    assert _constants.MAX_RETRY_DELAY == openai_http.MAX_RETRY_DELAY
    assert _constants.MAX_RETRY_AFTER_DELAY == openai_http.MAX_RETRY_AFTER_DELAY


def test_the_lean_transports_retry_policy_is_the_sdks() -> None:
    import httpx2
    import openai

    from rlm_core.clients.openai_http import ChatHTTP, _retry_after

    sdk = openai.OpenAI(api_key=KEY, base_url="http://127.0.0.1:9/v1")
    lean = ChatHTTP(None, base_url="http://127.0.0.1:9/v1", headers={}, max_retries=2, timeout=None)
    cases = [
        (status, headers)
        for status in (400, 404, 408, 409, 422, 429, 500, 503)
        for headers in (
            {},
            {"x-should-retry": "true"},
            {"x-should-retry": "false"},
            {"retry-after": "1000"},
            {"retry-after-ms": "250"},
            {"retry-after": "1e400"},
            {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"},
        )
    ]
    for status, headers in cases:
        response = httpx2.Response(status, headers=headers)
        assert lean._retry_status(response) == sdk._should_retry(response), (status, headers)
        ours, theirs = _retry_after(response.headers), sdk._parse_retry_after_header(response.headers)
        assert (ours is None) == (theirs is None) and (ours is None or abs(ours - theirs) < 2), headers
    assert lean._retry_delay(0, httpx2.Headers({"retry-after-ms": "250"})) == 0.25
    for taken in range(6):
        assert 0.75 * min(0.5 * 2**taken, 8.0) <= lean._retry_delay(taken, None) <= min(0.5 * 2**taken, 8.0)


def test_a_run_on_the_lean_transport_never_imports_the_sdk(server: LoopbackLLMServer) -> None:
    code = (
        "import sys; from rlm_core import RLM; "
        f"kwargs = {{'model_name': 'm', 'api_key': {KEY!r}, 'base_url': {server.base_url!r}}}; "
        "r = RLM(backend='openai', backend_kwargs=kwargs | {'transport': 'http'}).completion('ctx'); "
        "print(r.response, 'openai' in sys.modules)"
    )
    server.set_replies(["```repl\nFINAL('done')\n```"])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.split() == ["done", "False"], result.stderr[-2000:]


def test_the_lean_transport_never_shows_the_key(server: LoopbackLLMServer) -> None:
    client = make(server, transport="http", api_key=KEY)
    server.api_key = None
    client.complete(ask())
    lean = client._sync_client
    assert KEY not in repr(lean) and KEY not in str(lean) and KEY not in repr(client)
