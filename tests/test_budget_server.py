"""Budgets and usage checked against what a real HTTP server counted, through the real OpenAI SDK.

The loopback server counts tokens itself (rlm_core.testing.tokens) and reports them as the provider's
usage; these tests compare the engine's limits and totals with the server's own counters.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlm_core import RLM
from rlm_core.testing import LoopbackLLMServer, repl
from rlm_core.types import StopReason

ROOT, SUB = "root-model", "sub-model"


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackLLMServer]:
    with LoopbackLLMServer() as running:
        yield running


def scripted(root_replies: list[str], sub_reply: str) -> Any:
    def reply(request: dict[str, Any]) -> str:
        if request["model"] == SUB:
            return sub_reply
        turn = sum(1 for m in request["messages"] if m["role"] == "assistant")
        return root_replies[min(turn, len(root_replies) - 1)]

    return reply


def test_usage_summary_equals_what_the_server_counted(server: LoopbackLLMServer) -> None:
    server.reset()
    server.set_replies(
        scripted(
            [repl("out = llm_query_batched(['a', 'b', 'c'])\nprint(out)"), repl("FINAL('done')")],
            "sub says hi",
        )
    )
    result = RLM(**server.rlm_tiers(ROOT, SUB)).completion("some context")
    assert result.response == "done"
    counted = server.model_totals
    usage = result.usage_summary.by_tier_model
    assert usage[("root", ROOT)].input_tokens == counted[ROOT].input_tokens
    assert usage[("root", ROOT)].output_tokens == counted[ROOT].output_tokens
    assert usage[("sub", SUB)].calls == counted[SUB].requests == 3
    assert usage[("sub", SUB)].total_tokens == counted[SUB].input_tokens + counted[SUB].output_tokens


@given(
    limit=st.integers(200, 6000),
    reply_words=st.integers(1, 800),
    calls=st.integers(1, 40),
    batched=st.booleans(),
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_sub_budget_holds_by_the_servers_count(
    server: LoopbackLLMServer, limit: int, reply_words: int, calls: int, batched: bool
) -> None:
    server.reset()
    call = (
        f"out = llm_query_batched(['question %d' % i for i in range({calls})])"
        if batched
        else f"out = []\nfor i in range({calls}):\n    out.append(llm_query('question %d' % i))"
    )
    server.set_replies(scripted([repl(call), repl("FINAL('finished')")], "word " * reply_words))
    result = RLM(**server.rlm_tiers(ROOT, SUB), max_sub_tokens=limit).completion("ctx")
    assert result.response == "finished"
    sub = server.model_totals.get(SUB)
    spent = (sub.input_tokens + sub.output_tokens) if sub else 0
    assert spent <= limit


@given(limit=st.integers(2500, 15000), reply_words=st.integers(1, 400))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_root_budget_holds_by_the_servers_count(
    server: LoopbackLLMServer, limit: int, reply_words: int
) -> None:
    server.reset()
    server.set_replies(scripted([f"Still looking. {'word ' * reply_words}\n" + repl("print(1)")], "x"))
    result = RLM(**server.rlm_tiers(ROOT, SUB), max_root_tokens=limit, max_iterations=50).completion("ctx")
    root = server.model_totals.get(ROOT)
    spent = (root.input_tokens + root.output_tokens) if root else 0
    assert root is not None and root.requests >= 1  # the first prompt always fits these limits
    assert spent <= limit
    assert result.stop_reason in (StopReason.ROOT_BUDGET, StopReason.FINAL, StopReason.MAX_ITERATIONS)
    if result.stop_reason is StopReason.ROOT_BUDGET:
        assert "max_root_tokens" in (result.error or "")
