"""The attributes of each span: the GenAI conventions' names for model calls and agent runs, the
``rlm.*`` ones for depth, tier, cost, stop reason and answer source, and error status on failures."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from otel_runs import FAN_OUT_TURNS, ROOT, SUB, make_rlm, scripted
from otel_spantree import attributes, roots

from rlm_core import RLM
from rlm_core.testing import LoopbackLLMServer, repl

PRICE = (1.0, 3.0)  # USD per million input / output tokens


def test_model_call_spans_carry_the_genai_attributes_and_the_servers_token_counts(
    server: LoopbackLLMServer, exporter: InMemorySpanExporter
) -> None:
    server.reset()
    server.set_replies(scripted(FAN_OUT_TURNS))
    with make_rlm(server, max_depth=2) as rlm:
        rlm.completion("context")
    chats = [attributes(s) for s in exporter.get_finished_spans() if s.name.startswith("chat ")]
    for chat in chats:
        assert chat["gen_ai.operation.name"] == "chat"
        assert chat["gen_ai.provider.name"] == chat["gen_ai.system"] == "openai"
        assert chat["gen_ai.request.model"] == chat["gen_ai.response.model"]
        assert chat["gen_ai.response.finish_reasons"] == ("stop",)
        assert "rlm.finish_reason_inferred" not in chat  # the server's own reason, carried by the call
        assert chat["gen_ai.request.max_tokens"] > 0
        assert chat["rlm.tier"] == ("root" if chat["gen_ai.request.model"] == ROOT else "sub")
        assert chat["rlm.depth"] == (0 if chat["rlm.tier"] == "root" else chat["rlm.depth"]) >= 0
    for model in (ROOT, SUB):
        mine = [c for c in chats if c["gen_ai.request.model"] == model]
        counted = server.model_totals[model]
        assert len(mine) == counted.requests
        assert sum(c["gen_ai.usage.input_tokens"] for c in mine) == counted.input_tokens
        assert sum(c["gen_ai.usage.output_tokens"] for c in mine) == counted.output_tokens


def test_the_run_span_says_how_the_run_ended_what_it_cost_and_where_the_answer_came_from(
    server: LoopbackLLMServer, exporter: InMemorySpanExporter
) -> None:
    server.reset()
    server.set_replies(scripted([repl("print(llm_query('hi'))"), repl("FINAL('42')")]))
    settings = {**server.connection(), "price": PRICE}
    with RLM(
        backend="openai",
        backend_kwargs={"model_name": ROOT, **settings},
        other_backends=["openai"],
        other_backend_kwargs=[{"model_name": SUB, **settings}],
    ) as rlm:
        result = rlm.completion("context", root_prompt="What is the answer?")
    spans = list(exporter.get_finished_spans())
    (run,) = roots(spans)
    run_attributes = attributes(run)
    assert run_attributes["gen_ai.operation.name"] == "invoke_agent"
    assert run_attributes["gen_ai.agent.name"] == "rlm"
    assert run_attributes["gen_ai.request.model"] == ROOT
    assert run_attributes["gen_ai.provider.name"] == "openai"
    assert run_attributes["rlm.depth"] == 0
    assert run_attributes["rlm.stop_reason"] == "final"
    assert run_attributes["rlm.answer_source"] == "final"
    assert run_attributes["rlm.iterations"] == 2
    total = result.usage_summary.total
    assert (run_attributes["gen_ai.usage.input_tokens"], run_attributes["gen_ai.usage.output_tokens"]) == (
        total.input_tokens,
        total.output_tokens,
    )
    assert total.cost is not None and run_attributes["rlm.cost"] == pytest.approx(total.cost)
    chat_costs = [attributes(s)["rlm.cost"] for s in spans if s.name.startswith("chat ")]
    assert sum(chat_costs) == pytest.approx(total.cost)
    (last_iteration,) = [
        s for s in spans if s.name == "rlm.iteration" and attributes(s)["rlm.iteration"] == 2
    ]
    assert attributes(last_iteration)["rlm.answer_source"] == "final"
    assert run.status.status_code is StatusCode.UNSET


def test_a_failed_model_call_and_the_run_it_ended_have_error_status(
    server: LoopbackLLMServer, exporter: InMemorySpanExporter
) -> None:
    server.reset()
    server.set_replies(scripted([repl("FINAL('never')")]))
    server.fail_next(1, status=500)
    with make_rlm(server) as rlm:
        result = rlm.completion("context")
    assert result.error
    spans = list(exporter.get_finished_spans())
    (run,) = roots(spans)
    assert run.status.status_code is StatusCode.ERROR
    assert attributes(run)["rlm.stop_reason"] == "error"
    (chat,) = [s for s in spans if s.name.startswith("chat ")]
    assert chat.status.status_code is StatusCode.ERROR
    assert attributes(chat)["error.type"]
    assert attributes(chat)["gen_ai.response.finish_reasons"] == ("error",)


def test_a_code_cell_that_raises_is_an_errored_tool_span(
    server: LoopbackLLMServer, exporter: InMemorySpanExporter
) -> None:
    server.reset()
    server.set_replies(scripted([repl("1 / 0"), repl("FINAL('recovered')")]))
    with make_rlm(server) as rlm:
        assert rlm.completion("context").response == "recovered"
    cells = [s for s in exporter.get_finished_spans() if s.name == "execute_tool repl"]
    assert [c.status.status_code for c in cells] == [StatusCode.ERROR, StatusCode.UNSET]
    assert attributes(cells[0])["error.type"] == "ZeroDivisionError"
    assert attributes(cells[0])["gen_ai.tool.name"] == "repl"
    assert "ZeroDivisionError" in (cells[0].status.description or "")
