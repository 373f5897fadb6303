"""Spans that belong together end together: a strategy's action is an event on its iteration, a
reply cut at its cap reads as finish reason "length", and a run that ends without some end events
(a cancelled cell) leaves no span open."""

from __future__ import annotations

from typing import Any

import rlm_otel
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otel_runs import ROOT, make_rlm, scripted
from otel_spantree import attributes
from rlm_otel.observer import SpanObserver

from rlm_core import RLM
from rlm_core.events import (
    CodeStarted,
    EventKind,
    IterationStarted,
    RunEnded,
    RunEvent,
    RunStarted,
    SubcallStarted,
)
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
        backend_kwargs={"model_name": ROOT, "max_tokens": 8, **server.connection()},
        max_iterations=1,
    ) as rlm:
        rlm.completion("context")
    chats = [attributes(s) for s in exporter.get_finished_spans() if s.name == f"chat {ROOT}"]
    assert chats and all(c["gen_ai.response.finish_reasons"] == ("length",) for c in chats)
    # The server said "length" itself, so the reason is the provider's, not inferred from the cap.
    assert all(c["gen_ai.usage.output_tokens"] == 8 and "rlm.finish_reason_inferred" not in c for c in chats)


def _event(
    kind: EventKind,
    payload: object,
    span: str,
    parent: str | None,
    run: str = "run-1",
    parent_run: str | None = None,
) -> RunEvent:
    return RunEvent(
        kind=kind,
        run_id=run,
        depth=0 if run == "run-1" else 1,
        payload=payload,
        span_id=span,
        parent_span_id=parent,
        parent_run_id=parent_run,
    )


def test_a_run_that_ends_without_its_cells_end_leaves_no_span_open(exporter: InMemorySpanExporter) -> None:
    # A cancelled completion: the cell, its rlm_query and the child run it started never end.
    observer = SpanObserver()
    metadata = RunMetadata("run-1", "m", "openai", "local", 0.0, span_id="r")
    child = RunMetadata("run-2", "m", "openai", "local", 0.0, depth=1, parent_run_id="run-1", span_id="r2")
    result = RLMChatCompletion(
        "m", "ctx", "", UsageSummary(), 0.1, StopReason.CANCELLED, "cancelled", run_id="run-1"
    )
    for event in (
        _event(EventKind.RUN_START, RunStarted(metadata), "r", None),
        _event(EventKind.ITERATION_START, IterationStarted(1), "i", "r"),
        _event(EventKind.CODE_START, CodeStarted("rlm_query('x')"), "c", "i"),
        _event(EventKind.SUBCALL_START, SubcallStarted("call-1", "rlm_query", ""), "q", "c"),
        _event(EventKind.RUN_START, RunStarted(child), "r2", "q", run="run-2", parent_run="run-1"),
        _event(EventKind.ITERATION_START, IterationStarted(1), "i2", "r2", run="run-2", parent_run="run-1"),
        _event(EventKind.RUN_END, RunEnded(result), "r", None),
    ):
        observer.on_event(event)
    assert observer.table.open == {}
    spans = list(exporter.get_finished_spans())
    names = ["invoke_agent rlm", "rlm.iteration", "execute_tool repl", "execute_tool rlm_query"]
    assert sorted(s.name for s in spans) == sorted([*names, "invoke_agent rlm", "rlm.iteration"])
    (root,) = [s for s in spans if s.parent is None]
    assert attributes(root)["rlm.stop_reason"] == "cancelled"
    assert all(attributes(s)["rlm.incomplete"] is True for s in spans if s is not root)
    assert all(s.end_time == root.end_time for s in spans)
    assert rlm_otel.force_flush()
