"""Tests of rlm_core.testing: the tokenizer, the loopback server over raw HTTP, ScriptedClient and
the pytest fixtures."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlm_core.errors import ConfigurationError, ProviderError
from rlm_core.testing import LoopbackLLMServer, ScriptedClient, pytest_plugin
from rlm_core.testing.tokens import count_message_tokens, count_tokens, truncate_to_tokens
from rlm_core.types import LMRequest, LMResponse, Message, TokenUsage

REPO = Path(__file__).resolve().parents[1]

# The kit's fixtures (an installed rlm-core also provides them through its pytest11 entry point).
openai_server = pytest_plugin.openai_server
anthropic_server = pytest_plugin.anthropic_server
scripted_client_factory = pytest_plugin.scripted_client_factory


def post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def chat(server: LoopbackLLMServer, content: str = "hi", **extra: Any) -> tuple[int, Any]:
    body = {"model": "m", "messages": [{"role": "user", "content": content}], **extra}
    return post(f"{server.base_url}/chat/completions", body)


# -- tokens ------------------------------------------------------------------------------------


def test_count_tokens_is_a_quarter_of_the_utf8_bytes_rounded_up() -> None:
    assert count_tokens("") == 0
    assert count_tokens("abcd") == 1
    assert count_tokens("abcde") == 2
    assert count_tokens("é") == 1  # 2 bytes
    assert count_tokens("日本語") == 3  # 9 bytes


def test_count_message_tokens_adds_four_per_message_and_three_per_request() -> None:
    messages = [{"role": "system", "content": "abcd"}, Message("user", "abcdefgh")]
    assert count_message_tokens(messages) == (1 + 4) + (2 + 4) + 3
    assert count_message_tokens([{"role": "user", "content": [{"type": "text", "text": "abcd"}]}]) == 8


@given(st.text(), st.integers(min_value=0, max_value=50))
def test_truncation_keeps_a_prefix_within_the_token_cap(text: str, max_tokens: int) -> None:
    cut, truncated = truncate_to_tokens(text, max_tokens)
    assert text.startswith(cut)
    assert count_tokens(cut) <= max_tokens
    assert truncated == (cut != text)


# -- loopback server over raw HTTP --------------------------------------------------------------


def test_scripted_replies_are_consumed_in_order_and_the_last_repeats(
    openai_server: LoopbackLLMServer,
) -> None:
    openai_server.set_replies(["one", "two"])
    texts = [chat(openai_server)[1]["choices"][0]["message"]["content"] for _ in range(3)]
    assert texts == ["one", "two", "two"]


def test_an_exhausted_strict_script_answers_400_naming_the_script(openai_server: LoopbackLLMServer) -> None:
    openai_server.set_replies(["only"])
    openai_server.when_exhausted = "error"
    assert chat(openai_server)[0] == 200
    status, body = chat(openai_server)
    assert status == 400
    assert "exhausted" in body["error"]["message"]


def test_a_callable_reply_sees_the_body_and_path(anthropic_server: LoopbackLLMServer) -> None:
    seen: list[dict[str, Any]] = []

    def reply(request: dict[str, Any]) -> str:
        seen.append(request)
        return request["messages"][-1]["content"].upper()

    anthropic_server.set_replies(reply)
    body = {
        "model": "c",
        "max_tokens": 100,
        "system": "sys",
        "messages": [{"role": "user", "content": "abc"}],
    }
    status, message = post(f"{anthropic_server.anthropic_base_url}/v1/messages", body)
    assert status == 200
    assert message["content"] == [{"type": "text", "text": "ABC"}]
    assert message["stop_reason"] == "end_turn"
    assert seen[0]["path"] == "/v1/messages" and seen[0]["system"] == "sys"
    # system "sys" (1+4) + user "abc" (1+4) + 3
    assert message["usage"] == {"input_tokens": 13, "output_tokens": 1}


def test_usage_and_counters_match_and_max_tokens_truncates(openai_server: LoopbackLLMServer) -> None:
    openai_server.set_replies(["x" * 40])
    status, body = chat(openai_server, "abcd", max_completion_tokens=3)
    assert status == 200
    assert body["choices"][0]["message"]["content"] == "x" * 12
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3
    assert body["usage"]["prompt_tokens"] == 1 + 4 + 3
    assert openai_server.total_input_tokens == 8
    assert openai_server.total_output_tokens == 3
    assert openai_server.model_totals["m"].requests == 1


def test_counters_are_consistent_under_concurrent_requests(openai_server: LoopbackLLMServer) -> None:
    openai_server.set_replies(["abcdefgh"])  # 2 output tokens each
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            assert chat(openai_server, "abcd")[0] == 200
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(openai_server.requests) == 24
    assert openai_server.total_output_tokens == 48
    assert openai_server.total_input_tokens == 24 * 8


def test_models_endpoint_lists_the_models_seen(openai_server: LoopbackLLMServer) -> None:
    chat(openai_server)
    with urllib.request.urlopen(f"{openai_server.base_url}/models", timeout=10) as response:
        listing = json.loads(response.read())
    assert {m["id"] for m in listing["data"]} >= {"m", "loopback-model"}


def test_api_key_mismatch_is_401_and_the_header_is_recorded(openai_server: LoopbackLLMServer) -> None:
    openai_server.api_key = "right"
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    url = f"{openai_server.base_url}/chat/completions"
    status, error = post(url, body, {"Authorization": "Bearer wrong"})
    assert status == 401 and "right" not in json.dumps(error)
    assert post(url, body, {"Authorization": "Bearer right"})[0] == 200
    assert [h["authorization"] for h in openai_server.request_headers] == ["Bearer wrong", "Bearer right"]


def test_faults_are_served_in_order_and_then_normal_replies(openai_server: LoopbackLLMServer) -> None:
    openai_server.fail_next(1, status=503)
    openai_server.malformed_next()
    status, body = chat(openai_server)
    assert status == 503 and "injected" in body["error"]["message"]
    status, raw = chat(openai_server)
    assert status == 200 and isinstance(raw, bytes)  # not JSON
    assert chat(openai_server)[0] == 200
    openai_server.drop_next()
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        chat(openai_server)
    assert len(openai_server.requests) == 4


def test_an_invalid_request_body_is_a_400(openai_server: LoopbackLLMServer) -> None:
    status, body = post(f"{openai_server.base_url}/chat/completions", b"{nope")
    assert status == 400 and "not valid JSON" in body["error"]["message"]


def test_the_server_refuses_non_loopback_hosts() -> None:
    with pytest.raises(ConfigurationError, match="loopback"):
        LoopbackLLMServer(host="0.0.0.0")


def test_reset_forgets_requests_and_rewinds_the_script(openai_server: LoopbackLLMServer) -> None:
    openai_server.set_replies(["a", "b"])
    chat(openai_server)
    openai_server.reset()
    assert openai_server.requests == [] and openai_server.total_input_tokens == 0
    assert chat(openai_server)[1]["choices"][0]["message"]["content"] == "a"


def test_the_server_runs_as_a_separate_process() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "rlm_core.testing.servers", "--port", "0", "--reply", "from a process"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        status, reply = post(f"{base_url}/chat/completions", body)
        assert status == 200
        assert reply["choices"][0]["message"]["content"] == "from a process"
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


# -- ScriptedClient -------------------------------------------------------------------------------


def request(text: str = "hi", max_tokens: int | None = None) -> LMRequest:
    return LMRequest([Message("system", "s"), Message("user", text)], max_tokens=max_tokens)


def test_scripted_client_replies_in_order_with_token_usage(scripted_client_factory: Any) -> None:
    client = scripted_client_factory(["first", "second"], model_name="root")
    first = client.complete(request("abcd"))
    assert first.text == "first" and first.model == "root" and first.finish_reason == "stop"
    assert first.usage == TokenUsage(count_message_tokens(request("abcd").messages), count_tokens("first"))
    assert client.complete(request()).text == "second"
    assert client.complete(request()).text == "second"  # the last reply repeats
    assert client.prompts == ["abcd", "hi", "hi"]


def test_strict_scripted_client_raises_when_the_script_runs_out() -> None:
    client = ScriptedClient(["only"], strict=True)
    client.complete(request())
    with pytest.raises(ProviderError, match="all 1 scripted replies were used"):
        client.complete(request())


def test_scripted_client_callable_and_response_passthrough() -> None:
    canned = LMResponse("canned", TokenUsage(7, 9), model="x")
    client = ScriptedClient(
        lambda r: canned if "canned" in r.messages[-1].content else r.messages[-1].content * 2
    )
    assert client.complete(request("ab")).text == "abab"
    assert client.complete(request("canned")) is canned


def test_scripted_client_fail_on_index_does_not_consume_a_reply() -> None:
    client = ScriptedClient(["a", "b"], fail_on={1: TimeoutError})
    assert client.complete(request()).text == "a"
    with pytest.raises(TimeoutError, match="call 1"):
        client.complete(request())
    assert client.complete(request()).text == "b"
    assert client.calls == 3 and len(client.requests) == 3


def test_scripted_client_fail_on_callable() -> None:
    failure = ProviderError("boom", client="scripted", retryable=True)
    client = ScriptedClient(
        ["ok"], fail_on=lambda i, r: failure if "fail" in r.messages[-1].content else None
    )
    with pytest.raises(ProviderError) as info:
        client.complete(request("please fail"))
    assert info.value is failure
    assert client.complete(request("fine")).text == "ok"


def test_scripted_client_honours_max_tokens_like_the_server() -> None:
    client = ScriptedClient(["y" * 100])
    response = client.complete(request(max_tokens=5))
    assert response.text == "y" * 20 and response.finish_reason == "length"
    assert response.usage.output_tokens == 5


def test_scripted_client_rejects_a_bare_string() -> None:
    with pytest.raises(ConfigurationError, match="wrap it"):
        ScriptedClient("reply")  # type: ignore[arg-type]


async def test_scripted_client_async_calls_overlap_and_are_all_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = ScriptedClient(lambda r: r.messages[-1].content, latency=0.05)
    in_flight = 0
    peak = 0
    original = asyncio.sleep

    async def counting_sleep(delay: float) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await original(delay)
        in_flight -= 1

    monkeypatch.setattr(asyncio, "sleep", counting_sleep)
    replies = await asyncio.gather(*(client.acomplete(request(str(i))) for i in range(8)))
    assert [r.text for r in replies] == [str(i) for i in range(8)]
    assert peak == 8  # all eight were sleeping at once: concurrency is real
    assert len(client.requests) == 8


def test_importing_the_kit_does_not_import_the_sdks() -> None:
    code = (
        "import sys, rlm_core.testing, rlm_core.testing.pytest_plugin; "
        "print(sorted(m for m in ('openai', 'anthropic') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "[]"
