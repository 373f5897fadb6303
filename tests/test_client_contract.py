"""The client contract suite run against the built-in clients (over their real SDKs) and the scripted one."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from rlm_core.clients.anthropic_client import AnthropicClient
from rlm_core.clients.openai_client import OpenAIClient
from rlm_core.errors import ProviderError
from rlm_core.testing import LoopbackLLMServer, ScriptedClient
from rlm_core.testing.client_contract import SECRET, ClientContract
from rlm_core.types import TokenUsage


class LoopbackContract(ClientContract):
    server: LoopbackLLMServer

    @pytest.fixture(autouse=True)
    def _server(self) -> Iterator[None]:
        with LoopbackLLMServer() as server:
            self.server = server
            yield

    def counted_usage(self) -> TokenUsage | None:
        return TokenUsage(self.server.total_input_tokens, self.server.total_output_tokens)


class TestOpenAIClientContract(LoopbackContract):
    def make_client(self, replies: Sequence[str], api_key: str) -> Any:
        self.server.set_replies(list(replies))
        return OpenAIClient(model_name="gpt-test", api_key=api_key, base_url=self.server.base_url)

    def make_failing_client(self) -> Any:
        self.server.fail_next(100, status=500)
        return OpenAIClient(model_name="gpt-test", api_key=SECRET,
                            base_url=self.server.base_url, max_retries=0)  # fmt: skip


class TestAnthropicClientContract(LoopbackContract):
    def make_client(self, replies: Sequence[str], api_key: str) -> Any:
        self.server.set_replies(list(replies))
        return AnthropicClient(
            model_name="claude-haiku-4-5-20251001", api_key=api_key, base_url=self.server.anthropic_base_url
        )

    def make_failing_client(self) -> Any:
        self.server.fail_next(100, status=529)
        return AnthropicClient(model_name="claude-haiku-4-5-20251001", api_key=SECRET,
                               base_url=self.server.anthropic_base_url, max_retries=0)  # fmt: skip


class TestScriptedClientContract(ClientContract):
    def make_client(self, replies: Sequence[str], api_key: str) -> Any:
        return ScriptedClient(list(replies))

    def make_failing_client(self) -> Any:
        return ScriptedClient(fail_on=lambda index, request: ProviderError("scripted outage"))
