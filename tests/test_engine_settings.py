"""RLM settings that shape what the root model sees: system prompt, output truncation, prompt style."""

from __future__ import annotations

from typing import Any

import pytest

from rlm_core import RLM
from rlm_core.environments.local import LocalEnvironment
from rlm_core.errors import ConfigurationError
from rlm_core.testing import ScriptedClient, repl


def test_custom_system_prompt_replaces_the_default() -> None:
    root = ScriptedClient([repl("FINAL('x')")])
    RLM(backend=root, custom_system_prompt="You are the custom prompt.").completion("ctx")
    assert root.requests[0].messages[0].content == "You are the custom prompt."


def test_long_output_is_truncated_for_the_model_but_keeps_head_and_tail() -> None:
    root = ScriptedClient([repl("print('HEAD' + 'x' * 50_000 + 'TAIL')"), repl("FINAL('done')")])
    RLM(backend=root, max_output_chars=2_000).completion("ctx")
    feedback = root.requests[1].messages[-1].content
    assert len(feedback) < 3_000
    assert "HEAD" in feedback and "TAIL" in feedback and "characters omitted" in feedback


def test_the_model_name_decides_nothing_about_the_prompt() -> None:
    seen = set()
    for name in ("qwen2.5-coder-1.5b", "phi-3-medium", "smollm2", "gpt-5"):
        client = ScriptedClient([repl("FINAL('x')")], model_name=name)
        RLM(backend=client).completion("ctx")
        request = client.requests[0]
        seen.add((request.messages[0].content, request.max_tokens))
    assert len(seen) == 1  # the same prompt and the same output cap, whatever the name


@pytest.mark.parametrize(
    "name", ["context", "context_2", "history_0", "FINAL", "llm_query", "answer", "not a name"]
)
def test_custom_tool_names_that_clash_fail_at_construction(name: str) -> None:
    root = ScriptedClient([repl("FINAL('x')")])
    with pytest.raises(ConfigurationError, match="custom tool name"):
        RLM(backend=root, custom_tools={name: 1})
    assert root.calls == 0


async def test_every_environment_checks_tool_names_the_same_way() -> None:
    async def host(function: str, args: dict[str, Any]) -> Any:
        return None

    with pytest.raises(ConfigurationError, match="clashes"):
        await LocalEnvironment().start(host, {"history_3": 1})
