"""The span tree of a real run over HTTP: run → iteration → code cell → batch of 8 sub-calls and a
child RLM → model calls, nested by the events' span ids, all in one trace, each inside its parent."""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from otel_runs import FAN_OUT_SHAPE, FAN_OUT_SPANS, FAN_OUT_TURNS, SUB, count, fan_out, make_rlm, scripted
from otel_spantree import attributes, children, roots, shape

from rlm_core.testing import LoopbackLLMServer


def _run(server: LoopbackLLMServer) -> tuple[str, int]:
    """The fan-out run; returns its run id and how many model calls its ledger counted."""
    result = fan_out(server)
    return result.run_id, result.usage_summary.total.calls


def test_a_batch_of_eight_and_a_child_rlm_nest_under_the_right_parents(
    server: LoopbackLLMServer, exporter: InMemorySpanExporter
) -> None:
    run_id, calls = _run(server)
    spans = list(exporter.get_finished_spans())

    (root,) = roots(spans)
    assert attributes(root)["rlm.run_id"] == run_id
    assert shape(spans, root) == FAN_OUT_SHAPE and len(spans) == count(FAN_OUT_SHAPE) == FAN_OUT_SPANS
    # Every span is in the run's trace, and every model call the ledger counted is a span.
    assert root.context is not None
    assert {s.context.trace_id for s in spans if s.context} == {root.context.trace_id}
    assert (
        sum(1 for s in spans if s.name.startswith("chat ")) == calls == server.model_totals[SUB].requests + 2
    )


def test_batched_slots_keep_their_order_and_the_child_run_names_its_parent(
    server: LoopbackLLMServer, exporter: InMemorySpanExporter
) -> None:
    run_id, _ = _run(server)
    spans = list(exporter.get_finished_spans())
    (batch,) = [s for s in spans if s.name == "execute_tool llm_query_batched"]
    assert attributes(batch)["rlm.batch.size"] == 8
    assert sorted(attributes(s)["rlm.batch.index"] for s in children(spans, batch)) == list(range(8))
    (child,) = [s for s in spans if s.name == "invoke_agent rlm" and s.parent is not None]
    child_attributes = attributes(child)
    assert child_attributes["rlm.depth"] == 1 and child_attributes["rlm.parent_run_id"] == run_id
    (query,) = [s for s in spans if s.name == "execute_tool rlm_query"]
    assert attributes(query)["rlm.child_run_id"] == child_attributes["rlm.run_id"]
    inner = [s for s in spans if s.name == f"chat {SUB}" and attributes(s)["rlm.depth"] == 2]
    assert len(inner) == 1, "the child's own llm_query is a depth-2 model call"


def test_each_span_lies_within_its_parent_and_model_calls_are_client_spans(
    server: LoopbackLLMServer, exporter: InMemorySpanExporter
) -> None:
    _run(server)
    spans = list(exporter.get_finished_spans())
    by_id = {s.context.span_id: s for s in spans if s.context}
    for span in spans:
        assert span.start_time is not None and span.end_time is not None
        assert span.start_time <= span.end_time
        if span.parent is not None:
            parent = by_id[span.parent.span_id]
            assert parent.start_time <= span.start_time and span.end_time <= parent.end_time  # type: ignore[operator]
        assert span.kind == (SpanKind.CLIENT if span.name.startswith("chat ") else SpanKind.INTERNAL)


async def test_concurrent_completions_each_get_a_trace_of_their_own(
    server: LoopbackLLMServer, exporter: InMemorySpanExporter
) -> None:
    server.reset()
    server.set_replies(scripted(FAN_OUT_TURNS))
    with make_rlm(server, max_depth=2) as rlm:
        results = await asyncio.gather(*(rlm.acompletion(f"context {n}") for n in range(3)))
    assert [r.response for r in results] == ["done"] * 3
    spans = list(exporter.get_finished_spans())
    runs = roots(spans)
    assert sorted(attributes(r)["rlm.run_id"] for r in runs) == sorted(r.run_id for r in results)
    assert all(shape(spans, run) == FAN_OUT_SHAPE for run in runs)
    assert len({r.context.trace_id for r in runs if r.context}) == 3
