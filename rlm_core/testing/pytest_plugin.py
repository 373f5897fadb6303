"""pytest fixtures of the rlm-core testing kit, loaded through the ``pytest11`` entry point.

``openai_server`` / ``anthropic_server`` yield a started ``LoopbackLLMServer`` (stopped after the
test); ``scripted_client_factory(replies, **kwargs)`` builds ``ScriptedClient`` objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rlm_core.testing.scripted import ReplyScript, ScriptedClient
from rlm_core.testing.servers import AnthropicServer, LoopbackLLMServer, OpenAIServer

__all__ = ["anthropic_server", "openai_server", "scripted_client_factory"]


@pytest.fixture
def openai_server() -> Iterator[LoopbackLLMServer]:
    """A loopback server for OpenAI-style clients: point them at ``openai_server.base_url``."""
    with OpenAIServer() as server:
        yield server


@pytest.fixture
def anthropic_server() -> Iterator[LoopbackLLMServer]:
    """A loopback server for Anthropic-style clients: use ``anthropic_server.anthropic_base_url``."""
    with AnthropicServer() as server:
        yield server


@pytest.fixture
def scripted_client_factory() -> Iterator[Callable[..., ScriptedClient]]:
    """``make(replies=None, **kwargs) -> ScriptedClient``; the clients are closed after the test."""
    made: list[ScriptedClient] = []

    def make(replies: ReplyScript = None, **kwargs: Any) -> ScriptedClient:
        client = ScriptedClient(replies, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
