"""RLM settings that shape what the root model sees: system prompt, output truncation, prompt style."""

from __future__ import annotations

from rlm_core import RLM
from rlm_core.testing import ScriptedClient


def repl(code: str) -> str:
    return f"```repl\n{code}\n```"


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


def test_prompt_style_follows_the_model_size_unless_set() -> None:
    small = ScriptedClient([repl("FINAL('x')")], model_name="qwen2.5-coder-1.5b")
    RLM(backend=small).completion("ctx")
    large = ScriptedClient([repl("FINAL('x')")], model_name="gpt-5")
    RLM(backend=large).completion("ctx")
    forced = ScriptedClient([repl("FINAL('x')")], model_name="gpt-5")
    RLM(backend=forced, prompt_style="small").completion("ctx")
    small_prompt = small.requests[0].messages[0].content
    large_prompt = large.requests[0].messages[0].content
    assert small_prompt != large_prompt
    assert forced.requests[0].messages[0].content == small_prompt
