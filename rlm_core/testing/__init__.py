"""rlm_core.testing: the public test kit for rlm-core and its plugin authors.

Loopback servers speak the OpenAI and Anthropic wire formats on 127.0.0.1, so a client plugin is
tested through its real SDK; ``ScriptedClient`` drives the engine without HTTP. Installing rlm-core
registers the pytest fixtures ``openai_server``, ``anthropic_server`` and ``scripted_client_factory``::

    from rlm_core.types import LMRequest, Message

    def test_my_client_round_trip(openai_server):
        openai_server.set_replies(["4"])
        client = MyClient(model_name="m", base_url=openai_server.base_url, api_key="x")
        response = client.complete(LMRequest([Message("user", "2+2?")], max_tokens=5))
        assert response.text == "4"
        assert response.usage.output_tokens == openai_server.total_output_tokens

    def test_engine_with_a_script(scripted_client_factory):
        root = scripted_client_factory([repl("FINAL('done')")])  # rlm_core.testing.repl
        ...

Faults: ``server.fail_next(2, status=500)``, ``malformed_next()``, ``drop_next()``,
``slow_next(delay=...)``; ``server.api_key = "k"`` makes other keys fail with 401.

``SandboxLifecycleContract``: subclass it in a sandbox plugin's tests and every path (close, failed
start, stuck cell, error, Ctrl-C, interpreter exit, ``rlm cleanup``) is checked to leave nothing behind.
What it cannot check in the test's own process has a check each: ``rlm cleanup`` end to end
(:mod:`rlm_core.testing.cleanup_command`) and an owner ended by a signal
(:mod:`rlm_core.testing.signalled_owner`).
"""

from __future__ import annotations

from rlm_core.testing.sandbox_lifecycle_contract import SandboxLifecycleContract
from rlm_core.testing.scripted import FailOn, ReplyScript, ScriptedClient, repl
from rlm_core.testing.servers import AnthropicServer, LoopbackLLMServer, ModelTotals, OpenAIServer
from rlm_core.testing.tokens import count_message_tokens, count_tokens, truncate_to_tokens

__all__ = [
    "AnthropicServer",
    "FailOn",
    "LoopbackLLMServer",
    "ModelTotals",
    "OpenAIServer",
    "ReplyScript",
    "SandboxLifecycleContract",
    "ScriptedClient",
    "count_message_tokens",
    "count_tokens",
    "repl",
    "truncate_to_tokens",
]
