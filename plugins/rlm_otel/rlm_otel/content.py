"""Prompts, completions and code as span attributes, in the GenAI conventions' message format.
Recorded only when the user opted in (``settings.capture_content``); every text goes through the
core's redaction first, whatever the engine already masked."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from rlm_core.redact import redact_text, secret_env_values

INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
TOOL_ARGUMENTS = "gen_ai.tool.call.arguments"
TOOL_RESULT = "gen_ai.tool.call.result"

Pair = tuple[str, str]  # (role, text)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def prompt_pairs(prompt: Any) -> list[Pair]:
    """A sub-call's prompt as (role, text) pairs: a string, or a chat-style list of dicts."""
    if isinstance(prompt, list) and all(isinstance(m, dict) and "content" in m for m in prompt):
        return [(str(m.get("role", "user")), str(m["content"])) for m in prompt]
    return [("user", prompt if isinstance(prompt, str) else repr(prompt))]


class ContentWriter:
    """Redacts and formats the content of one completion tree. The secret environment values are
    read once, when the completion starts: the core's redaction would otherwise walk the whole
    environment for every text."""

    def __init__(self, secrets: tuple[str, ...] | None = None) -> None:
        self.secrets = secret_env_values() if secrets is None else secrets

    def redact(self, text: str) -> str:
        return redact_text(text, self.secrets)

    def pairs(self, pairs: Iterable[Pair]) -> list[Pair]:
        """``pairs`` with their texts redacted."""
        return [(role, self.redact(text)) for role, text in pairs]

    @staticmethod
    def input_messages(redacted: Iterable[Pair]) -> str:
        """``[{"role": ..., "parts": [{"type": "text", "content": ...}]}, ...]`` as JSON, from
        pairs already redacted."""
        return _dumps(
            [{"role": role, "parts": [{"type": "text", "content": text}]} for role, text in redacted]
        )

    def output_message(self, text: str, finish_reason: str | None = None) -> str:
        message: dict[str, Any] = {
            "role": "assistant",
            "parts": [{"type": "text", "content": self.redact(text)}],
        }
        if finish_reason:
            message["finish_reason"] = finish_reason
        return _dumps([message])

    def system_instructions(self, text: str) -> str:
        return _dumps([{"type": "text", "content": self.redact(text)}])

    def _fields(self, **fields: Any) -> str:
        return _dumps({name: self.redact(v) if isinstance(v, str) else v for name, v in fields.items()})

    def code_cell_start(self, code: str) -> dict[str, str]:
        return {TOOL_ARGUMENTS: self._fields(code=code)}

    def code_cell_end(self, result: Any) -> dict[str, str]:
        outcome: dict[str, Any] = {"stdout": result.stdout, "stderr": result.stderr}
        if result.error:
            outcome["error"] = result.error
        if result.final_answer is not None:
            outcome["final_answer"] = result.final_answer
        return {TOOL_RESULT: self._fields(**outcome)}

    def subcall(self, record: Any) -> dict[str, str]:
        result = {"error": record.error} if record.error else {"response": record.response}
        return {TOOL_ARGUMENTS: self._fields(prompt=record.prompt), TOOL_RESULT: self._fields(**result)}

    def run_end(self, result: Any, root_prompt: str | None) -> dict[str, str]:
        """An agent invocation's input (the context's preview the core keeps, and the question) and
        its answer."""
        pairs = [("user", str(result.prompt))]
        if root_prompt:
            pairs.append(("user", root_prompt))
        attributes = {INPUT_MESSAGES: self.input_messages(self.pairs(pairs))}
        if result.response:
            attributes[OUTPUT_MESSAGES] = self.output_message(result.response)
        return attributes
