"""``rlm serve`` through LangChain's ``ChatOpenAI`` (plain, streamed and async), as a LangChain user
would point it at an RLM: base URL, key and a profile as the model name."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from rlm_core.serve.config import parse_config
from rlm_core.serve.harness import ServerThread
from rlm_core.testing import LoopbackLLMServer, repl

try:
    from langchain_openai import ChatOpenAI
except ImportError:  # pragma: no cover - depends on the machine
    if os.environ.get("CI"):
        raise  # CI installs the dev extra, which has langchain-openai
    pytest.skip("langchain-openai is not installed (pip install -e '.[dev]')", allow_module_level=True)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ServerThread, LoopbackLLMServer]]:
    # The root model answers with the question it was given, so the test sees the mapping too.
    def reply(request: dict) -> str:
        asked = request["messages"][-1]["content"]
        return repl(f"FINAL({('seen: ' + asked.split('Who wrote')[-1][:20])!r})")

    with LoopbackLLMServer(reply) as llm:
        connection = {"base_url": llm.base_url, "api_key": "k", "max_retries": 0}
        config = parse_config(
            {
                "server": {"limits_db": str(tmp_path / "limits.sqlite3")},
                "profiles": {
                    "rlm-test": {"backend": "openai", "backend_kwargs": {"model_name": "root", **connection}}
                },
            }
        )
        with ServerThread(config) as server:
            yield server, llm


def chat(server: ServerThread) -> ChatOpenAI:
    return ChatOpenAI(model="rlm-test", base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)


def test_chatopenai_invoke_stream_and_ainvoke(served: tuple[ServerThread, LoopbackLLMServer]) -> None:
    server, llm = served
    messages = [("system", "Be brief."), ("human", "A long text."), ("human", "Who wrote it?")]
    reply = chat(server).invoke(messages)
    assert isinstance(reply.content, str) and reply.content.startswith("seen: ")
    assert reply.response_metadata["model_name"] == "rlm-test"
    usage = reply.usage_metadata
    assert usage is not None and usage["total_tokens"] == llm.total_input_tokens + llm.total_output_tokens
    streamed = "".join(str(chunk.content) for chunk in chat(server).stream(messages))
    assert streamed == reply.content
    again = asyncio.run(chat(server).ainvoke(messages))
    assert again.content == reply.content
