"""Spans that belong together end together: a strategy's action is an event on its iteration, a
reply cut at its cap reads as finish reason "length", and a run that ends without some end events
(a cancelled cell) leaves no span open."""

from __future__ import annotations

from typing import Any

import rlm_otel
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otel_runs import ROOT, connection, make_rlm, scripted
from otel_spantree import attributes
from rlm_otel.observer import SpanObserver

from rlm_core import RLM
from rlm_core.events import CodeStarted, EventKind, IterationStarted, RunEnded, RunEvent, RunStarted
from rlm_core.guidance.strategy import BaseStrategy, Tell
from rlm_core.records import RunMetadata
from rlm_core.testing import LoopbackLLMServer, repl
from rlm_core.types import RLMChatCompletion, StopReason, UsageSummary


class Restate(BaseStrategy):
    name = "restate"

    def on_turn(self, view: Any) -> list[Tell]:
        return [Tell("The question is still there.", why="keep it in view")]


def test_a_strategy_action_is_an_event_on_its_iteration(
    server: LoopbackLLMServer, exporter: InMemorySpanExporter
) -> None:
    server.reset()
    server.set_replies(scripted(["Let me think.", repl("FINAL('ok')")]))
    with make_rlm(server, strategy=Restate()) as rlm:
        assert rlm.completion("context").response == "ok"
    first = min(
        (s for s in exporter.get_finished_spans() if s.name == "rlm.iteration"),
        key=lambda s: s.start_time or 0,
    )
    (action,) = first.events
    assert action.name == "rlm.strategy_action"
    assert dict(action.attributes or {}) == {
        "rlm.strategy": "restate",
        "rlm.strategy.action": "tell",
        "rlm.iteration": 1,
    }


def test_a_reply_cut_at_its_cap_has_finish_reason_length(
    server: LoopbackLLMServer, exporter: InMemorySpanExporter
) -> None:
    server.reset()
    server.set_replies(scripted([repl("FINAL('" + "word " * 50 + "')")]))
    with RLM(
        backend="openai",
        backend_kwargs={"model_name": ROOT, "max_tokens": 8, **connection(server)},
        max_iterations=1,
    ) as rlm:
        rlm.completion("context")
    chats = [attributes(s) for s in exporter.get_finished_spans() if s.name == f"chat {ROOT}"]
    assert chats and all(c["gen_ai.response.finish_reasons"] == ("length",) for c in chats)
    assert all(c["gen_ai.usage.output_tokens"] == 8 and c["rlm.finish_reason_inferred"] for c in chats)


def _event(kind: EventKind, payload: object, span: str, parent: str | None) -> RunEvent:
    return RunEvent(kind=kind, run_id="run-1", depth=0, payload=payload, span_id=span, parent_span_id=parent)


def test_a_run_that_ends_without_its_cells_end_leaves_no_span_open(exporter: InMemorySpanExporter) -> None:
    observer = SpanObserver()
    metadata = RunMetadata("run-1", "m", "openai", "local", 0.0, span_id="r")
    result = RLMChatCompletion(
        "m", "ctx", "", UsageSummary(), 0.1, StopReason.CANCELLED, "cancelled", run_id="run-1"
    )
    for event in (
        _event(EventKind.RUN_START, RunStarted(metadata), "r", None),
        _event(EventKind.ITERATION_START, IterationStarted(1), "i", "r"),
        _event(EventKind.CODE_START, CodeStarted("while True: pass"), "c", "i"),
        _event(EventKind.RUN_END, RunEnded(result), "r", None),
    ):
        observer.on_event(event)
    assert observer.table.open == {}
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"invoke_agent rlm", "rlm.iteration", "execute_tool repl"}
    assert attributes(spans["execute_tool repl"])["rlm.incomplete"] is True
    assert attributes(spans["invoke_agent rlm"])["rlm.stop_reason"] == "cancelled"
    run_end = spans["invoke_agent rlm"].end_time
    assert all(s.end_time == run_end for s in spans.values())
    assert rlm_otel.force_flush()
