"""Fixtures for rlm-otel's tests: an in-memory span exporter the plugin traces into, a loopback
OpenAI-compatible server scripted per request, and the span tree as nested names."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import rlm_otel
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rlm_core import RLM
from rlm_core.testing import LoopbackLLMServer, repl

ROOT, SUB = "root-model", "sub-model"
CHILD_TASK = "child task"


@pytest.fixture(autouse=True)
def clean_otel_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No OTEL_* or RLM_OTEL_* setting of the machine leaks into a test; the plugin's own settings
    are back to their defaults after each."""
    for name in list(os.environ):
        if name.startswith(("OTEL_", "RLM_OTEL_")):
            monkeypatch.delenv(name)
    yield
    rlm_otel.configure(tracer_provider=None, capture_content=None)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Spans of every completion in the test, finished and exported synchronously."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    rlm_otel.configure(tracer_provider=provider)
    yield spans
    provider.shutdown()


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackLLMServer]:
    with LoopbackLLMServer() as running:
        yield running


def connection(server: LoopbackLLMServer) -> dict[str, Any]:
    return {"base_url": server.base_url, "api_key": "test", "max_retries": 0}


def make_rlm(server: LoopbackLLMServer, **kwargs: Any) -> RLM:
    """An RLM whose root and sub tiers are two models of the loopback server, over the openai SDK."""
    return RLM(
        backend="openai",
        backend_kwargs={"model_name": ROOT, **connection(server)},
        other_backends=["openai"],
        other_backend_kwargs=[{"model_name": SUB, **connection(server)}],
        **kwargs,
    )


def scripted(
    root_turns: list[str], sub_reply: str = "leaf answer", child_turns: list[str] | None = None
) -> Any:
    """A reply function for the server: the root model answers ``root_turns`` turn by turn, a child
    RLM (a sub-model request with the engine's system prompt) ``child_turns``, and every plain
    sub-call ``sub_reply``."""
    child = child_turns or [repl("FINAL(llm_query('inner question'))")]

    def reply(request: dict[str, Any]) -> str:
        messages = request["messages"]
        turn = sum(1 for m in messages if m["role"] == "assistant")
        if request["model"] == ROOT:
            return root_turns[min(turn, len(root_turns) - 1)]
        if messages and messages[0]["role"] == "system":
            return child[min(turn, len(child) - 1)]
        return sub_reply

    return reply


# The run the tree tests and the export test drive: a batch of 8 sub-calls and a child RLM.
FAN_OUT_CODE = (
    "out = llm_query_batched([f'item {i}' for i in range(8)])\n"
    f"child = rlm_query({CHILD_TASK!r})\n"
    "print(len(out), child)"
)
FAN_OUT_TURNS = [repl(FAN_OUT_CODE), repl("FINAL('done')")]


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    """``parent``'s direct children, in start order."""
    found = [
        s
        for s in spans
        if s.parent is not None and parent.context is not None and s.parent.span_id == parent.context.span_id
    ]
    return sorted(found, key=lambda s: s.start_time or 0)


def roots(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is None]


def shape(spans: list[ReadableSpan], span: ReadableSpan) -> Any:
    """The tree below ``span`` as ``(name, [children...])``, children in start order."""
    return (span.name, [shape(spans, child) for child in children(spans, span)])


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})
