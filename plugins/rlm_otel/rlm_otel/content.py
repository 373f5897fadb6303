"""Prompts, completions and code as span attributes, in the GenAI conventions' message format.
Recorded only when the user opted in (``settings.capture_content``); every text goes through the
core's redaction first, whatever the engine already masked."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from rlm_core.redact import redact_text

INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
TOOL_ARGUMENTS = "gen_ai.tool.call.arguments"
TOOL_RESULT = "gen_ai.tool.call.result"


def _text_part(text: str) -> dict[str, str]:
    return {"type": "text", "content": redact_text(text)}


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def input_messages(messages: Iterable[tuple[str, str]]) -> str:
    """``[{"role": ..., "parts": [{"type": "text", "content": ...}]}, ...]`` as JSON."""
    return _dumps([{"role": role, "parts": [_text_part(text)]} for role, text in messages])


def output_message(text: str, finish_reason: str | None = None) -> str:
    message: dict[str, Any] = {"role": "assistant", "parts": [_text_part(text)]}
    if finish_reason:
        message["finish_reason"] = finish_reason
    return _dumps([message])


def system_instructions(text: str) -> str:
    return _dumps([_text_part(text)])


def prompt_pairs(prompt: Any) -> list[tuple[str, str]]:
    """A sub-call's prompt as (role, text) pairs: a string, or a chat-style list of dicts."""
    if isinstance(prompt, list) and all(isinstance(m, dict) and "content" in m for m in prompt):
        return [(str(m.get("role", "user")), str(m["content"])) for m in prompt]
    return [("user", prompt if isinstance(prompt, str) else repr(prompt))]


def tool_arguments(**arguments: Any) -> str:
    return _dumps({name: redact_text(value) for name, value in arguments.items()})


def tool_result(**results: Any) -> str:
    return _dumps(
        {name: redact_text(value) if isinstance(value, str) else value for name, value in results.items()}
    )


def code_cell_start(code: str) -> dict[str, str]:
    return {TOOL_ARGUMENTS: tool_arguments(code=code)}


def code_cell_end(result: Any) -> dict[str, str]:
    outcome: dict[str, Any] = {"stdout": result.stdout, "stderr": result.stderr}
    if result.error:
        outcome["error"] = result.error
    if result.final_answer is not None:
        outcome["final_answer"] = result.final_answer
    return {TOOL_RESULT: tool_result(**outcome)}


def subcall(record: Any) -> dict[str, str]:
    result = {"error": record.error} if record.error else {"response": record.response}
    return {TOOL_ARGUMENTS: tool_arguments(prompt=record.prompt), TOOL_RESULT: tool_result(**result)}


def run_end(result: Any, root_prompt: str | None) -> dict[str, str]:
    """An agent invocation's input (the context's preview the core keeps, and the question) and
    its answer."""
    pairs = [("user", str(result.prompt))]
    if root_prompt:
        pairs.append(("user", root_prompt))
    attributes = {INPUT_MESSAGES: input_messages(pairs)}
    if result.response:
        attributes[OUTPUT_MESSAGES] = output_message(result.response)
    return attributes
