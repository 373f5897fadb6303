"""Prompts, completions and code reach spans only when the user opts in (the GenAI conventions'
switch, or ``rlm_otel.configure``), and then only through the core's redaction."""

from __future__ import annotations

import json
from typing import Any

import pytest
import rlm_otel
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otel_runs import FAN_OUT_TURNS, ROOT, SUB, make_rlm, scripted
from otel_spantree import attributes

from rlm_core.redact import REDACTED
from rlm_core.testing import LoopbackLLMServer, repl

CONTENT_KEYS = (
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
)
# Shaped like an OpenAI key: the core's redaction must mask it wherever it appears.
SECRET = "sk-proj-" + "Q7f2Lk9Xw3Rt8Vb1Nm4Zc6Hy0Pd5Sa"


def _run(server: LoopbackLLMServer, turns: list[str] | None = None, sub_reply: str = "leaf answer") -> None:
    server.reset()
    server.set_replies(scripted(turns or FAN_OUT_TURNS, sub_reply))
    with make_rlm(server, max_depth=2) as rlm:
        result = rlm.completion("the context", root_prompt="What is in it?")
    assert result.error is None, result.error


def _content(spans: list[ReadableSpan]) -> list[str]:
    return [key for span in spans for key in attributes(span) if key in CONTENT_KEYS]


def _messages(span: ReadableSpan, key: str) -> list[dict[str, Any]]:
    return list(json.loads(str(attributes(span)[key])))


def test_no_content_is_recorded_by_default(server: LoopbackLLMServer, exporter: InMemorySpanExporter) -> None:
    _run(server)
    spans = list(exporter.get_finished_spans())
    assert spans and _content(spans) == []


@pytest.mark.parametrize("value", ["false", "NO_CONTENT", ""])
def test_the_switch_set_to_anything_but_on_keeps_content_out(
    server: LoopbackLLMServer, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", value)
    _run(server)
    assert _content(list(exporter.get_finished_spans())) == []


def test_the_conventions_switch_records_prompts_replies_and_code(
    server: LoopbackLLMServer, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    _run(server)
    spans = list(exporter.get_finished_spans())
    root_chats = [s for s in spans if s.name == f"chat {ROOT}"]
    first, second = sorted(root_chats, key=lambda s: s.start_time or 0)
    assert "The context is loaded" in _messages(first, "gen_ai.input.messages")[0]["parts"][0]["content"]
    assert "llm_query_batched" in _messages(first, "gen_ai.output.messages")[0]["parts"][0]["content"]
    assert _messages(first, "gen_ai.output.messages")[0]["finish_reason"] == "stop"
    assert _messages(first, "gen_ai.system_instructions")[0]["type"] == "text"
    # The second call was sent the whole history: the first prompt, the model's reply, the output.
    roles = [m["role"] for m in _messages(second, "gen_ai.input.messages")]
    assert roles == ["user", "assistant", "user"]
    slots = [s for s in spans if s.name == f"chat {SUB}" and attributes(s)["rlm.depth"] == 1]
    prompts = sorted(_messages(s, "gen_ai.input.messages")[0]["parts"][0]["content"] for s in slots)
    assert [p for p in prompts if p.startswith("item ")] == [f"item {i}" for i in range(8)]
    replies = {_messages(s, "gen_ai.output.messages")[0]["parts"][0]["content"] for s in slots}
    assert "leaf answer" in replies
    cell = min((s for s in spans if s.name == "execute_tool repl"), key=lambda s: s.start_time or 0)
    assert "llm_query_batched" in json.loads(str(attributes(cell)["gen_ai.tool.call.arguments"]))["code"]
    (batch_slot, *_) = [s for s in spans if s.name == "execute_tool llm_query"]
    arguments = json.loads(str(attributes(batch_slot)["gen_ai.tool.call.arguments"]))
    assert arguments["prompt"].startswith(("item ", "inner question"))


def test_the_plugin_setting_turns_capture_on_and_off(
    server: LoopbackLLMServer, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    rlm_otel.configure(capture_content=True)
    _run(server)
    assert _content(list(exporter.get_finished_spans()))
    exporter.clear()
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    rlm_otel.configure(capture_content=False)  # the plugin's own setting wins over the variable
    _run(server)
    assert _content(list(exporter.get_finished_spans())) == []


def test_captured_content_is_redacted_everywhere(
    server: LoopbackLLMServer, exporter: InMemorySpanExporter
) -> None:
    rlm_otel.configure(capture_content=True)
    code = f"key = {SECRET!r}\nreply = llm_query('use ' + key)\nprint(reply)"
    _run(server, [repl(code), repl("FINAL('done')")], sub_reply=f"the key was {SECRET}")
    spans = list(exporter.get_finished_spans())
    values = [str(value) for span in spans for value in attributes(span).values()]
    assert not [v for v in values if SECRET in v], "a secret-shaped value reached a span"
    (query,) = [s for s in spans if s.name == "execute_tool llm_query"]
    assert REDACTED in json.loads(str(attributes(query)["gen_ai.tool.call.arguments"]))["prompt"]
    (sub_chat,) = [s for s in spans if s.name == f"chat {SUB}"]
    assert REDACTED in _messages(sub_chat, "gen_ai.output.messages")[0]["parts"][0]["content"]
