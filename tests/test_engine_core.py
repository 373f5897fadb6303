"""The engine core's contracts: budgets that wait under concurrency, one ledger equal to what the
server counted, cost and call limits, and a complete, correctly parented event tree."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlm_core import RLM
from rlm_core.clients.base import Price
from rlm_core.errors import ConfigurationError
from rlm_core.events import EventKind, RunEvent
from rlm_core.loggers.jsonl import read_trajectory
from rlm_core.testing import LoopbackLLMServer, ScriptedClient, repl
from rlm_core.types import LMRequest, StopReason

ROOT, SUB = "root-model", "sub-model"


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackLLMServer]:
    with LoopbackLLMServer() as running:
        yield running


def make_rlm(server: LoopbackLLMServer, **kwargs: Any) -> RLM:
    return RLM(**server.rlm_tiers(ROOT, SUB), **kwargs)


def by_turn(root_replies: list[str], sub_reply: str) -> Any:
    def reply(request: dict[str, Any]) -> str:
        if request["model"] != ROOT:
            return sub_reply
        turn = sum(1 for m in request["messages"] if m["role"] == "assistant")
        return root_replies[min(turn, len(root_replies) - 1)]

    return reply


# -- budgets wait instead of failing -----------------------------------------------------------


@pytest.mark.parametrize("concurrency", [128, 512])
def test_a_large_fan_out_completes_every_slot_within_default_budgets(
    server: LoopbackLLMServer, concurrency: int
) -> None:
    # 2,048 slots each reserve their prompt plus 8,192 output tokens: at concurrency 128 the
    # reservations pass 1,000,000, so later calls must wait for earlier ones, never fail.
    server.reset()
    code = "out = llm_query_batched(['q%d' % i for i in range(2048)])\nprint(sum(o == 'ok' for o in out))"
    server.set_replies(by_turn([repl(code), repl("FINAL('done')")], "ok"))
    result = make_rlm(server, max_concurrent_subcalls=concurrency).completion("ctx")
    assert result.response == "done", result.error
    assert server.model_totals[SUB].requests == 2048
    sub = result.usage_summary.tier_total("sub")
    assert sub.calls == 2048
    assert sub.total_tokens == server.model_totals[SUB].input_tokens + server.model_totals[SUB].output_tokens


@given(
    limit=st.integers(200, 6000),
    reply_words=st.integers(1, 400),
    calls=st.integers(1, 60),
    concurrency=st.sampled_from([1, 16, 128, 512]),
)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_concurrent_sub_calls_never_pass_the_limit_by_the_servers_count(
    server: LoopbackLLMServer, limit: int, reply_words: int, calls: int, concurrency: int
) -> None:
    server.reset()
    code = f"out = llm_query_batched(['question %d' % i for i in range({calls})])\nprint(out[:1])"
    server.set_replies(by_turn([repl(code), repl("FINAL('finished')")], "word " * reply_words))
    result = make_rlm(server, max_sub_tokens=limit, max_concurrent_subcalls=concurrency).completion("c")
    assert result.response == "finished"
    sub = server.model_totals.get(SUB)
    assert ((sub.input_tokens + sub.output_tokens) if sub else 0) <= limit


# -- one ledger --------------------------------------------------------------------------------


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_ledger_equals_the_servers_count_across_tiers_models_children_and_fallbacks(
    server: LoopbackLLMServer,
) -> None:
    server.reset()
    # The child RLM (max_depth=2) runs its own loop on the sub tier; the first sub client is down,
    # so the fallback policy serves sub-calls from the next configured model.
    child_script = repl("FINAL(llm_query('inner'))")

    def reply(request: dict[str, Any]) -> str:
        messages = request["messages"]
        first_user = next(m["content"] for m in messages if m["role"] == "user")
        if request["model"] == ROOT and "child task" not in first_user:
            turn = sum(1 for m in messages if m["role"] == "assistant")
            script = [
                repl("a = llm_query_batched(['x', 'y'])\nb = rlm_query('child task')\nprint(a, b)"),
                repl("FINAL('done')"),
            ]
            return script[min(turn, 1)]
        if any(m["role"] == "assistant" for m in messages) or "child task" not in first_user:
            return "leaf answer"
        return child_script

    server.set_replies(reply)
    dead = {"base_url": f"http://127.0.0.1:{_dead_port()}/v1", "api_key": "test", "max_retries": 0}
    rlm = RLM(
        backend="openai",
        backend_kwargs={"model_name": ROOT, **server.connection()},
        other_backends=["openai", "openai"],
        other_backend_kwargs=[
            {"model_name": "down-model", **dead},
            {"model_name": SUB, **server.connection()},
        ],
        routing="fallback",
        max_depth=2,
    )
    result = rlm.completion("context")
    assert result.response == "done", result.error
    usage = result.usage_summary
    for model, counted in server.model_totals.items():
        ours = usage.model_totals()[model]
        assert (ours.input_tokens, ours.output_tokens) == (counted.input_tokens, counted.output_tokens)
        assert ours.calls == counted.requests
    # The failed attempts at the down model are in the ledger too, with no tokens.
    down = usage.model_totals().get("down-model")
    assert down is not None and down.total_tokens == 0 and down.calls >= 1
    assert usage.total.total_tokens == server.total_input_tokens + server.total_output_tokens


# -- cost and call limits ----------------------------------------------------------------------


def test_max_cost_stops_the_run_and_the_spend_stays_under_it(server: LoopbackLLMServer) -> None:
    server.reset()
    server.set_replies(by_turn(["Still looking. " + "word " * 200 + "\n" + repl("print(1)")], "x"))
    price = (1.0, 3.0)  # USD per million tokens
    rlm = RLM(
        backend="openai",
        backend_kwargs={"model_name": ROOT, "price": price, **server.connection()},
        max_cost=0.03,
        max_iterations=100,
    )
    result = rlm.completion("ctx")
    assert result.stop_reason is StopReason.COST_LIMIT
    assert "max_cost" in (result.error or "")
    root = server.model_totals[ROOT]
    spent = (root.input_tokens * price[0] + root.output_tokens * price[1]) / 1e6
    assert root.requests >= 2 and spent <= 0.03
    assert result.usage_summary.total.cost == pytest.approx(spent)


def test_max_cost_without_a_price_is_a_configuration_error_that_says_how_to_pass_one() -> None:
    with pytest.raises(ConfigurationError, match=r"no known price.*'price'"):
        RLM(backend=ScriptedClient(["x"], model_name="unpriced"), max_cost=1.0)


def test_max_llm_calls_counts_root_and_sub_calls_together() -> None:
    root = ScriptedClient([repl("print(llm_query_batched(['a', 'b', 'c']))")], price=Price(1, 1))
    sub = ScriptedClient(["s"], model_name="sub")
    rlm = RLM(backend=root, other_backends=[sub], max_llm_calls=6, max_iterations=50)
    result = rlm.completion("ctx")
    assert result.stop_reason is StopReason.CALL_LIMIT
    assert "max_llm_calls=6" in (result.error or "")
    assert root.calls + sub.calls == 6
    assert result.usage_summary.total.calls == 6


def test_a_reply_without_usage_is_charged_at_the_estimate() -> None:
    from rlm_core.types import LMResponse

    root = ScriptedClient(lambda request: LMResponse(text="FINAL('ok')"), model_name="no-usage")
    result = RLM(backend=root, strategy=None).completion("ctx")
    total = result.usage_summary.total
    assert total.estimated_calls == 1
    assert total.input_tokens > 0 and total.output_tokens > 0


# -- the event tree ----------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[RunEvent] = []

    def on_event(self, event: RunEvent) -> None:
        self.events.append(event)

    def close(self) -> None:
        return None


PARENT_KINDS = {
    EventKind.ITERATION_START: {EventKind.RUN_START},
    EventKind.CODE_START: {EventKind.ITERATION_START},
    EventKind.BATCH_START: {EventKind.CODE_START},
    EventKind.SUBCALL_START: {EventKind.CODE_START, EventKind.BATCH_START},
    EventKind.LM_CALL_START: {EventKind.ITERATION_START, EventKind.RUN_START, EventKind.SUBCALL_START},
    EventKind.RUN_START: {EventKind.SUBCALL_START},
}
ENDS = {
    EventKind.RUN_END: EventKind.RUN_START,
    EventKind.ITERATION_END: EventKind.ITERATION_START,
    EventKind.CODE_END: EventKind.CODE_START,
    EventKind.BATCH_END: EventKind.BATCH_START,
    EventKind.SUBCALL_END: EventKind.SUBCALL_START,
    EventKind.LM_CALL_END: EventKind.LM_CALL_START,
}

cell = st.one_of(
    st.integers(1, 4).map(lambda n: f"print(llm_query_batched(['p%d' % i for i in range({n})]))"),
    st.just("print(llm_query('one'))"),
    st.just("print(rlm_query('child question'))"),
    st.just("x = 1"),
)


@given(turns=st.lists(st.lists(cell, min_size=1, max_size=3), min_size=1, max_size=3))
@settings(max_examples=25, deadline=None)
def test_every_event_is_parented_in_the_span_tree(turns: list[list[str]]) -> None:
    root_script = ["\n".join(repl(code) for code in turn) for turn in turns] + ["FINAL('end')"]

    def sub_reply(request: LMRequest) -> str:
        # A child RLM's root calls are sub-tier calls too: let the child finish at once.
        if request.purpose == "root":
            return "FINAL('child done')"
        return "leaf"

    recorder = Recorder()
    rlm = RLM(
        backend=ScriptedClient(root_script),
        other_backends=[ScriptedClient(sub_reply, model_name="sub")],
        max_depth=2,
        logger=recorder,
        strategy=None,
    )
    result = rlm.completion("ctx")
    assert result.response == "end"

    started: dict[str, RunEvent] = {}
    ended: set[str] = set()
    for event in recorder.events:
        assert event.span_id, event
        if event.kind in ENDS:
            start = started[event.span_id]  # an end always follows its own start
            assert start.kind is ENDS[event.kind] and start.parent_span_id == event.parent_span_id
            ended.add(event.span_id)
            continue
        assert event.span_id not in started
        started[event.span_id] = event
        if event.parent_span_id is None:
            assert event.kind is EventKind.RUN_START and event.depth == 0
            continue
        parent = started[event.parent_span_id]  # the parent started before its child
        assert parent.span_id not in ended
        assert parent.kind in PARENT_KINDS[event.kind], (event.kind, parent.kind)
    assert ended == set(started)  # nothing left open
    batch_slots = [
        e for e in recorder.events if e.kind is EventKind.SUBCALL_START and e.payload.batch_index is not None
    ]
    for slot in batch_slots:
        assert started[slot.parent_span_id].kind is EventKind.BATCH_START


# -- logs --------------------------------------------------------------------------------------


def test_a_version_1_log_still_reads(tmp_path: Path) -> None:
    lines = [
        {
            "type": "metadata",
            "schema_version": 1,
            "run_id": "r1",
            "root_model": "m",
            "backend": "openai",
            "environment": "local",
            "started_at": 1.0,
        },
        {
            "type": "iteration",
            "run_id": "r1",
            "iteration": 1,
            "response": "FINAL('x')",
            "code_blocks": [{"code": "print(1)", "stdout": "1\n", "subcalls": []}],
            "final_answer": "x",
        },
        {
            "type": "result",
            "root_model": "m",
            "prompt": "ctx",
            "response": "x",
            "usage_summary": [
                {
                    "tier": "root",
                    "model": "m",
                    "calls": 1,
                    "input_tokens": 5,
                    "output_tokens": 2,
                    "cost": None,
                }
            ],
            "execution_time": 0.1,
            "stop_reason": "final",
            "run_id": "r1",
        },
    ]
    path = tmp_path / "old.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    trajectory = read_trajectory(path)
    assert trajectory.complete
    assert trajectory.iterations[0].code_blocks[0].stdout == "1\n"
    assert trajectory.iterations[0].span_id == ""  # version 1 has no span ids
    assert trajectory.result is not None and trajectory.result.usage_summary.total.total_tokens == 7


def test_the_log_carries_the_span_ids_and_model_calls(tmp_path: Path) -> None:
    from rlm_core import RLMLogger

    root = ScriptedClient([repl("print(llm_query_batched(['a', 'b']))"), "FINAL('done')"])
    rlm = RLM(
        backend=root, other_backends=[ScriptedClient(["s"], model_name="sub")], logger=RLMLogger(tmp_path)
    )
    result = rlm.completion("ctx")
    assert result.log_path is not None
    trajectory = read_trajectory(result.log_path)
    first = trajectory.iterations[0]
    assert first.span_id and first.parent_span_id == trajectory.metadata.span_id == result.run_id
    slots = first.code_blocks[0].subcalls
    assert sorted(s.batch_index for s in slots) == [0, 1]
    assert {s.batch_id for s in slots} == {slots[0].parent_span_id}
    purposes = sorted(call.purpose for call in first.calls)
    assert purposes == ["llm_query", "llm_query", "root"]
    sub_calls = [c for c in first.calls if c.purpose == "llm_query"]
    assert {c.parent_span_id for c in sub_calls} == {s.span_id for s in slots}


def test_a_persistent_subprocess_repl_keeps_its_variables_across_sync_completions() -> None:
    completions = 0

    def script(request: LMRequest) -> str:
        nonlocal completions
        turn = sum(1 for m in request.messages if m.role == "assistant")
        if turn == 0:
            completions += 1
        replies = (
            [repl("kept = 41"), "FINAL('set')"]
            if completions == 1
            else [
                repl("out = str(kept + 1)"),
                "FINAL_VAR(out)",
            ]
        )
        return replies[min(turn, 1)]

    root = ScriptedClient(script)
    with RLM(backend=root, environment="subprocess", persistent=True, strategy=None) as rlm:
        assert rlm.completion("first").response == "set"
        second = rlm.completion("second")  # a new sync call: the same loop, the same child process
    assert second.response == "42", second.error


async def test_the_sandbox_starts_while_the_first_root_call_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio
    import time

    from rlm_core.environments.sandbox import SandboxEnvironment

    moments: dict[str, float] = {}
    original_start = SandboxEnvironment.start

    async def slow_start(self: SandboxEnvironment, host: Any, tools: dict[str, Any]) -> None:
        await asyncio.sleep(0.3)  # a sandbox that takes a while to come up
        await original_start(self, host, tools)
        moments["ready"] = time.monotonic()

    def reply(request: LMRequest) -> str:
        turn = sum(1 for m in request.messages if m.role == "assistant")
        moments.setdefault("first_call", time.monotonic())
        return [repl("print('ran')"), "FINAL('done')"][min(turn, 1)]

    monkeypatch.setattr(SandboxEnvironment, "start", slow_start)
    rlm = RLM(backend=ScriptedClient(reply), environment="subprocess", strategy=None)
    result = await rlm.acompletion("ctx")
    assert result.response == "done"
    assert moments["first_call"] < moments["ready"]  # the model was asked before the REPL was up


def test_a_prompt_that_cannot_fit_the_sub_models_window_is_refused_before_sending() -> None:
    sub = ScriptedClient(["never"], model_name="small-window", context_window=1000)
    root = ScriptedClient(
        [repl("r = llm_query('x' * 100_000)\nprint(r)"), "FINAL('done')"], model_name="root"
    )
    result = RLM(backend=root, other_backends=[sub], strategy=None).completion("ctx")
    assert sub.calls == 0  # nothing was sent
    second_turn = root.requests[1].messages[-1].content
    assert "exceeds the context window of 1,000 tokens" in second_turn
    assert "small-window" not in result.usage_summary.model_totals()  # no call made, nothing charged
