"""``rlm serve`` through the real openai SDK (sync, async, streaming) against the server on
127.0.0.1, backed by the loopback model server: answers, usage, the ``rlm`` extension, the mapping
rule, keys, request limits and OpenAI-shaped errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from rlm_core.serve.config import parse_config
from rlm_core.serve.harness import ServerThread
from rlm_core.serve.keys import ApiKey, KeyRing, hash_key
from rlm_core.serve.limits import KeyLimits
from rlm_core.serve.mapping import parse_request
from rlm_core.testing import LoopbackLLMServer, repl

REPO = Path(__file__).resolve().parents[1]
PROVIDER_KEY = "sk-provider-secret-0123456789abcdefABCDEF"


def model_reply(request: dict[str, Any]) -> str:
    """Root: one cell that asks the sub model about the context and finishes with its answer.
    Sub: echoes the tag it was asked about, so crossed answers would show."""
    if request["model"].startswith("sub"):
        return "SUB:" + request["messages"][-1]["content"].split("echo ", 1)[-1]
    return repl("FINAL(llm_query('echo ' + str(context)))")


def profile(llm: LoopbackLLMServer, log_dir: Path | None = None, **settings: Any) -> dict[str, Any]:
    connection = {"base_url": llm.base_url, "api_key": PROVIDER_KEY, "max_retries": 0, "timeout": 30}
    out: dict[str, Any] = {
        "backend": "openai",
        "backend_kwargs": {"model_name": settings.pop("root", "root"), **connection},
        "other_backends": ["openai"],
        "other_backend_kwargs": [{"model_name": settings.pop("sub", "sub"), **connection}],
        **settings,
    }
    if log_dir is not None:
        out["logger"] = f"jsonl:{log_dir}"
    return out


@pytest.fixture
def llm() -> Iterator[LoopbackLLMServer]:
    with LoopbackLLMServer(model_reply) as server:
        yield server


@pytest.fixture
def server(llm: LoopbackLLMServer, tmp_path: Path) -> Iterator[ServerThread]:
    config = parse_config(
        {
            "server": {"limits_db": str(tmp_path / "limits.sqlite3"), "max_body_bytes": 20_000},
            "profiles": {
                "rlm-test": profile(llm, tmp_path / "logs", max_iterations=5, max_root_tokens=20_000),
                "rlm-other": profile(llm),
            },
        }
    )
    with ServerThread(config) as running:
        yield running


def client(server: ServerThread, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


USER = [{"role": "user", "content": "tag-alpha"}]


def test_sync_completion_answers_with_usage_and_the_rlm_extension(
    server: ServerThread, llm: LoopbackLLMServer
) -> None:
    reply = client(server).chat.completions.create(model="rlm-test", messages=USER)
    assert reply.choices[0].message.content == "SUB:tag-alpha"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == "rlm-test"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == llm.total_input_tokens
    assert reply.usage.completion_tokens == llm.total_output_tokens
    extension = (reply.model_extra or {})["rlm"]
    assert extension["stop_reason"] == "final" and extension["answer_source"] == "final"
    assert reply.id == f"chatcmpl-{extension['run_id']}"
    tiers = extension["usage"]["tiers"]
    assert set(tiers) == {"root", "sub"} and "root" in tiers["root"] and "sub" in tiers["sub"]
    assert extension["usage"]["total"]["total_tokens"] == reply.usage.total_tokens
    log_path = Path(extension["log_path"])
    assert log_path.exists() and extension["run_id"] in log_path.read_text()


async def test_async_completions_run_concurrently_without_crossing(server: ServerThread) -> None:
    import asyncio

    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as aclient:
        replies = await asyncio.gather(
            *(
                aclient.chat.completions.create(
                    model="rlm-other", messages=[{"role": "user", "content": f"t{i}"}]
                )
                for i in range(4)
            )
        )
    assert [r.choices[0].message.content for r in replies] == [f"SUB:t{i}" for i in range(4)]


def test_streaming_sends_the_answer_as_deltas_then_usage(
    server: ServerThread, llm: LoopbackLLMServer
) -> None:
    stream = client(server).chat.completions.create(
        model="rlm-test", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "SUB:tag-alpha"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    finish = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert (finish.model_extra or {})["rlm"]["stop_reason"] == "final"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == llm.total_input_tokens + llm.total_output_tokens


async def test_async_streaming(server: ServerThread) -> None:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as aclient:
        stream = await aclient.chat.completions.create(model="rlm-other", messages=USER, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "SUB:tag-alpha"


def test_a_stream_keeps_the_connection_alive_while_the_rlm_works(
    llm: LoopbackLLMServer, tmp_path: Path
) -> None:
    import threading

    release = threading.Event()

    def slow(request: dict[str, Any]) -> str:
        if request["model"] == "sub":
            release.wait(30)
        return model_reply(request)

    llm.set_replies(slow)
    config = parse_config(
        {
            "server": {"limits_db": str(tmp_path / "l.sqlite3"), "keepalive_seconds": 0.05},
            "profiles": {"p": profile(llm)},
        }
    )
    with ServerThread(config) as server, httpx.Client(timeout=30) as http:
        body = {"model": "p", "messages": USER, "stream": True}
        with http.stream("POST", f"{server.base_url}/chat/completions", json=body) as response:
            lines = response.iter_lines()
            seen: list[str] = []
            for line in lines:
                seen.append(line)
                if line.startswith(": keep-alive"):
                    break
            release.set()
            seen.extend(lines)
    assert seen[0].startswith("data: ") and ": keep-alive" in seen
    assert seen[-2 if seen[-1] == "" else -1] == "data: [DONE]"


def test_models_lists_the_profiles_and_healthz_answers(server: ServerThread) -> None:
    assert sorted(m.id for m in client(server).models.list()) == ["rlm-other", "rlm-test"]
    health = httpx.get(f"{server.root_url}/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"


# -- the mapping rule ---------------------------------------------------------------------------------


def test_mapping_single_message_is_the_context() -> None:
    parsed = parse_request({"model": "m", "messages": [{"role": "user", "content": "doc and question"}]})
    assert parsed.prompt == "doc and question" and parsed.root_prompt is None


def test_mapping_earlier_messages_are_the_context_and_the_last_is_the_question() -> None:
    parsed = parse_request(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "a long document"}]},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "What is in it?"},
            ],
        }
    )
    assert parsed.prompt == "user: a long document\n\nassistant: ok"
    assert parsed.root_prompt == "Be brief.\n\nWhat is in it?"


def test_mapping_context_from_the_extra_body_is_kept_as_is() -> None:
    parsed = parse_request(
        {"model": "m", "messages": USER, "context": {"a": [1, 2]}, "rlm": {"max_iterations": 2}}
    )
    assert parsed.prompt == {"a": [1, 2]} and parsed.root_prompt == "tag-alpha"
    assert parsed.overrides == {"max_iterations": 2}


def test_context_from_extra_body_through_the_sdk(server: ServerThread) -> None:
    reply = client(server).chat.completions.create(
        model="rlm-test",
        messages=[{"role": "user", "content": "what tag?"}],
        extra_body={"context": "tag-ctx"},
    )
    assert reply.choices[0].message.content == "SUB:tag-ctx"


# -- errors ---------------------------------------------------------------------------------------------


def post(
    server: ServerThread, content: bytes, content_type: str = "application/json", **headers: str
) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/chat/completions",
        content=content,
        headers={"content-type": content_type, **headers},
    )


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"}, body
    return dict(body["error"])


def test_malformed_json_is_a_400(server: ServerThread) -> None:
    response = post(server, b'{"model": "rlm-test", "messages": [')
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_json"


def test_wrong_content_type_is_a_415(server: ServerThread) -> None:
    response = post(server, b"model=rlm-test", "application/x-www-form-urlencoded")
    assert response.status_code == 415 and "application/json" in error_of(response)["message"]


def test_an_oversize_body_is_a_clear_413(server: ServerThread, llm: LoopbackLLMServer) -> None:
    big = json.dumps({"model": "rlm-test", "messages": [{"role": "user", "content": "x" * 30_000}]}).encode()
    response = post(server, big)
    assert response.status_code == 413
    assert "20,000 bytes" in error_of(response)["message"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit still holds while reading
        yield big[:10_000]
        yield big[10_000:]

    response = httpx.post(
        f"{server.base_url}/chat/completions", content=chunked(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert llm.requests == []


def test_unknown_model_is_a_404_through_the_sdk(server: ServerThread) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(server).chat.completions.create(model="gpt-nope", messages=USER)
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"messages": USER}, "'model' is required"),
        ({"model": "rlm-test", "messages": []}, "non-empty"),
        ({"model": "rlm-test", "messages": [{"role": "assistant", "content": "hi"}]}, "must be the user's"),
        ({"model": "rlm-test", "messages": USER, "n": 2}, "n=1"),
        ({"model": "rlm-test", "messages": USER, "tools": [{"type": "function"}]}, "'tools'"),
        ({"model": "rlm-test", "messages": USER, "rlm": {"max_depth": 3}}, "may set only"),
        ({"model": "rlm-test", "messages": USER, "rlm": {"max_iterations": 6}}, "above the profile's limit"),
        ({"model": "rlm-test", "messages": USER, "rlm": {"max_root_tokens": 10}}, "max_root_tokens"),
        (
            {
                "model": "rlm-test",
                "messages": [*USER[:0], {"role": "user", "content": "a"}, *USER],
                "context": "c",
            },
            "not both",
        ),
    ],
)
def test_bad_requests_are_400s_that_say_why(server: ServerThread, body: dict[str, Any], needle: str) -> None:
    response = post(server, json.dumps(body).encode())
    assert response.status_code == 400, response.text
    assert needle in error_of(response)["message"]


def test_a_request_may_lower_the_profile_limits(server: ServerThread) -> None:
    reply = client(server).chat.completions.create(
        model="rlm-test", messages=USER, extra_body={"rlm": {"max_iterations": 1, "max_root_tokens": 5_000}}
    )
    assert reply.choices[0].message.content == "SUB:tag-alpha"


def test_a_failed_completion_is_a_502_without_the_provider_key(
    server: ServerThread, llm: LoopbackLLMServer
) -> None:
    llm.fail_next(5, status=500, body={"error": {"message": f"upstream broke, key={PROVIDER_KEY}"}})
    response = post(server, json.dumps({"model": "rlm-test", "messages": USER}).encode())
    assert response.status_code == 502, response.text
    assert error_of(response)["code"] == "completion_failed"
    assert PROVIDER_KEY not in response.text
    assert response.json()["rlm"]["stop_reason"] == "error"


# -- keys ---------------------------------------------------------------------------------------------


@pytest.fixture
def keyed(llm: LoopbackLLMServer, tmp_path: Path) -> Iterator[ServerThread]:
    config = parse_config(
        {
            "server": {"limits_db": str(tmp_path / "l.sqlite3")},
            "profiles": {"a": profile(llm), "b": profile(llm)},
        }
    )
    keys = KeyRing(
        [
            ApiKey("alice", hash_key("key-alice"), KeyLimits(max_concurrent=2)),
            ApiKey("bob", hash_key("key-bob"), KeyLimits(), frozenset({"b"})),
        ]
    )
    with ServerThread(config, keys) as running:
        yield running


def test_without_a_key_or_with_a_wrong_one_it_is_a_401(keyed: ServerThread) -> None:
    response = post(keyed, json.dumps({"model": "a", "messages": USER}).encode())
    assert response.status_code == 401 and error_of(response)["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client(keyed, "key-mallory").chat.completions.create(model="a", messages=USER)
    with pytest.raises(openai.AuthenticationError):
        client(keyed, "key-mallory").models.list()


def test_a_key_sees_and_uses_only_its_models(keyed: ServerThread) -> None:
    assert [m.id for m in client(keyed, "key-bob").models.list()] == ["b"]
    with pytest.raises(openai.NotFoundError):
        client(keyed, "key-bob").chat.completions.create(model="a", messages=USER)
    reply = client(keyed, "key-alice").chat.completions.create(model="a", messages=USER)
    assert reply.choices[0].message.content == "SUB:tag-alpha"


def test_keys_are_kept_hashed() -> None:
    ring = KeyRing([ApiKey("alice", hash_key("key-alice"), KeyLimits())])
    assert "key-alice" not in repr(ring.keys)
    found = ring.match("key-alice")
    assert found is not None and found.name == "alice"
    assert ring.match("key-alicf") is None


def test_no_secret_reaches_a_response(server: ServerThread, llm: LoopbackLLMServer) -> None:
    llm.set_replies(lambda request: repl(f"FINAL('the key is {PROVIDER_KEY}')"))
    response = post(server, json.dumps({"model": "rlm-test", "messages": USER}).encode())
    assert response.status_code == 200
    assert PROVIDER_KEY not in response.text
    assert llm.base_url.split("//")[1] not in response.json()["choices"][0]["message"]["content"]


# -- the command ------------------------------------------------------------------------------------


def rlm_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "rlm_core", *args], capture_output=True, text=True, env=environ, timeout=60
    )


def test_serve_refuses_a_public_address_without_keys(tmp_path: Path) -> None:
    done = rlm_cli("serve", "--host", "0.0.0.0", "--backend", "openai", "--limits-db", str(tmp_path / "l.db"))
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without API keys" in done.stderr


def test_new_key_prints_a_key_and_its_hashed_entry() -> None:
    done = rlm_cli("serve", "--new-key", "carol")
    assert done.returncode == 0, done.stderr
    key = done.stderr.strip().rsplit(" ", 1)[-1]
    assert key.startswith("rlm-") and key not in done.stdout
    assert f'sha256 = "{hash_key(key)}"' in done.stdout and 'name = "carol"' in done.stdout


def test_importing_rlm_core_or_the_cli_loads_nothing_of_the_server() -> None:
    code = (
        "import sys, rlm_core; from rlm_core.cli.app import build_parser; build_parser(); "
        "print([m for m in ('starlette', 'uvicorn', 'rlm_core.serve.app') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_config_file_with_a_bad_setting_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "rlm-serve.toml"
    config.write_text('[profiles.p]\nbackend = "openai"\npersistent = true\n')
    done = rlm_cli("serve", "--config", str(config))
    assert done.returncode == 2 and "persistent cannot be set in a served profile" in done.stderr


def test_a_profile_whose_sandbox_cannot_start_answers_502_that_says_why(
    llm: LoopbackLLMServer, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-python"
    config = parse_config(
        {
            "server": {"limits_db": str(tmp_path / "limits.sqlite3")},
            "profiles": {
                "broken": profile(llm, environment="subprocess", environment_kwargs={"python": str(missing)})
            },
        }
    )
    with ServerThread(config) as running:
        response = post(running, json.dumps({"model": "broken", "messages": USER}).encode())
        assert response.status_code == 502, response.text
        error = error_of(response)
        assert error["code"] == "completion_failed" and "no-such-python" in error["message"]
        assert PROVIDER_KEY not in response.text
        usage = running.service.completions.limiter.usage("anonymous")
        assert usage.in_flight == 0 and usage.completions == 1  # the reservation was settled
        # The server stays up: the next request to it gets its answer (a fresh error, not a hang).
        assert post(running, json.dumps({"model": "broken", "messages": USER}).encode()).status_code == 502
