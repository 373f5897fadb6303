"""The root loop end to end with scripted models: finishing, tiers, budgets, children, guards."""

from __future__ import annotations

import asyncio
import threading
import warnings
from typing import Any

import pytest

import rlm_core
from rlm_core import RLM
from rlm_core.errors import ConfigurationError, ProviderError
from rlm_core.events import EventKind
from rlm_core.plugins.registry import get_registry
from rlm_core.testing import ScriptedClient, count_message_tokens, count_tokens, repl
from rlm_core.types import LMRequest, StopReason


def last_user_message(request: LMRequest) -> str:
    return next(m.content for m in reversed(request.messages) if m.role == "user")


def test_code_then_final_with_usage_per_tier() -> None:
    root_replies = [
        repl("n = len(context)\nx = llm_query('summarise')\nprint(n, x)"),
        repl("FINAL(f'{n}-{x}')"),
    ]
    root = ScriptedClient(root_replies)
    sub = ScriptedClient(["SUB"], model_name="cheap")
    result = RLM(backend=root, other_backends=[sub]).completion("hello world")
    assert result.response == "11-SUB"
    assert result.stop_reason is StopReason.FINAL and result.ok and result.iterations == 2
    usage = result.usage_summary.to_dict()
    assert usage["tiers"]["root"]["scripted"]["total_calls"] == 2
    assert usage["tiers"]["sub"]["cheap"]["total_calls"] == 1
    counted = sum(count_message_tokens(r.messages) for r in root.requests + sub.requests)
    counted += sum(count_tokens(text) for text in ("SUB", *root_replies))
    assert usage["total"]["total_tokens"] == counted
    # the model saw its code's output
    assert "11 SUB" in last_user_message(root.requests[1])


def test_final_line_outside_code_and_final_var() -> None:
    root = ScriptedClient([repl("r = context.upper()"), "The result is ready.\nFINAL_VAR(r)"])
    assert RLM(backend=root).completion("abc").response == "ABC"
    root = ScriptedClient([repl("print(len(context))"), "FINAL(3 letters)"])
    assert RLM(backend=root).completion("abc").response == "3 letters"


def test_answer_dict_finishes_like_upstream() -> None:
    root = ScriptedClient([repl("answer['content'] = context[::-1]\nanswer['ready'] = True")])
    assert RLM(backend=root).completion("abc").response == "cba"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_root_tokens": 49}, "max_root_tokens must be >= 50"),
        ({"max_sub_tokens": 10.5}, "max_sub_tokens must be an int"),
        ({"max_sub_tokens": True}, "max_sub_tokens must be an int"),
        ({"backend_kwargs": {"max_root_tokens": 100}}, "belong to the RLM itself"),
        (
            {"other_backends": ["x"], "other_backend_kwargs": [{"max_sub_tokens": 100}]},
            "other_backend_kwargs",
        ),
        ({"max_iterations": 0}, "max_iterations"),
        ({"other_backends": ["a", "b"], "other_backend_kwargs": [{}]}, "one kwargs dict per other backend"),
    ],
)
def test_bad_configuration_fails_before_any_call(kwargs: dict[str, Any], message: str) -> None:
    root = ScriptedClient([repl("FINAL(1)")])
    with pytest.raises(ConfigurationError, match=message):
        RLM(backend=root, **kwargs)
    assert root.calls == 0


def test_unknown_backend_names_what_is_available() -> None:
    with pytest.raises(rlm_core.UnknownNameError, match=r"available: .*anthropic.*openai"):
        RLM(backend="nope", backend_kwargs={"model_name": "m"})
    # Plugins are published as rlm-<name>: an unknown name suggests that distribution.
    with pytest.raises(rlm_core.UnknownNameError, match="pip install rlm-nosuchbox"):
        RLM(backend=ScriptedClient([]), environment="nosuchbox")


def test_spent_sub_budget_is_an_exception_the_model_reads() -> None:
    sub = ScriptedClient(["y" * 4000], model_name="sub")  # each reply costs ~1000 tokens
    root = ScriptedClient([repl("for i in range(50):\n    llm_query('q')"), repl("FINAL('gave up')")])
    result = RLM(backend=root, other_backends=[sub], max_sub_tokens=3000).completion("ctx")
    assert result.response == "gave up"
    feedback = last_user_message(root.requests[1])
    assert "BudgetExceededError" in feedback and "max_sub_tokens" in feedback
    assert result.usage_summary.tier_total("sub").total_tokens <= 3000
    assert 0 < sub.calls < 50


def test_spent_root_budget_ends_with_partial_answer() -> None:
    root = ScriptedClient([f"My best guess so far is 42.\n{repl('print(1)')}"] * 20)
    result = RLM(backend=root, max_root_tokens=5000).completion("ctx")
    assert result.stop_reason is StopReason.ROOT_BUDGET
    assert "max_root_tokens" in (result.error or "")
    assert "best guess so far is 42" in result.response
    assert result.usage_summary.tier_total("root").total_tokens <= 5000


def test_output_cap_is_what_the_tier_has_left() -> None:
    root = ScriptedClient([repl("FINAL('x')")])
    RLM(backend=root, max_root_tokens=20_000).completion("ctx")
    request = root.requests[0]
    assert request.max_tokens is not None and request.max_tokens <= 20_000


def test_tiers_and_named_models() -> None:
    root = ScriptedClient(
        [repl("print(llm_query('a'), llm_query('b', model='big-sub'))"), repl("FINAL('ok')")],
        model_name="root",
    )
    small = ScriptedClient(["from-small"], model_name="small-sub")
    big = ScriptedClient(["from-big"], model_name="big-sub")
    rlm = RLM(backend=root, other_backends=[small, big])
    result = rlm.completion("ctx")
    assert result.response == "ok"
    assert "from-small from-big" in last_user_message(root.requests[1])
    assert small.calls == 1 and big.calls == 1


def test_unknown_model_in_llm_query_is_readable_in_the_repl() -> None:
    root = ScriptedClient([repl("llm_query('a', model='nope')"), repl("FINAL('done')")])
    RLM(backend=root).completion("ctx")
    assert "model 'nope' is not configured" in last_user_message(root.requests[1])


def test_child_rlm_uses_next_tier_and_rolls_usage_up() -> None:
    events: list[Any] = []

    class Recorder:
        def on_event(self, event: Any) -> None:
            events.append(event)

        def close(self) -> None:
            pass

    root = ScriptedClient(
        [repl("r = rlm_query('count the letters in: abcd')\nprint(r)"), repl("FINAL(r)")], model_name="root"
    )
    child = ScriptedClient([repl("x = llm_query(context)\nFINAL(x)")], model_name="child")
    leaf = ScriptedClient(["4"], model_name="leaf")
    rlm = RLM(backend=root, other_backends=[child, leaf], max_depth=2, logger=Recorder())
    result = rlm.completion("ctx")
    assert result.response == "4"
    assert child.calls == 1 and leaf.calls == 1
    assert leaf.requests[0].depth == 2
    tiers = result.usage_summary.to_dict()["tiers"]
    assert set(tiers["sub"]) == {"child", "leaf"}
    child_starts = [e for e in events if e.kind is EventKind.RUN_START and e.depth == 1]
    assert len(child_starts) == 1 and child_starts[0].parent_run_id == result.run_id
    iteration = next(e.data["record"] for e in events if e.kind is EventKind.ITERATION_END and e.depth == 0)
    subcall = iteration.code_blocks[0].subcalls[0]
    assert subcall.function == "rlm_query" and subcall.child_run_id is not None
    assert subcall.children[0].model == "leaf" and subcall.children[0].response == "4"


def test_rlm_query_without_depth_is_a_plain_call() -> None:
    root = ScriptedClient([repl("FINAL(rlm_query('q'))")])
    sub = ScriptedClient(["plain"], model_name="sub")
    assert RLM(backend=root, other_backends=[sub]).completion("ctx").response == "plain"


def test_batched_calls_keep_order_isolate_failures_and_respect_concurrency() -> None:
    in_flight = 0
    peak = 0
    lock = threading.Lock()

    def reply(request: LMRequest) -> str:
        nonlocal in_flight, peak
        prompt = request.messages[-1].content
        if prompt == "p3":
            raise ProviderError("boom", client="sub")
        return prompt.upper()

    class Gauge(ScriptedClient):
        async def acomplete(self, request: LMRequest) -> Any:
            nonlocal in_flight, peak
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
            try:
                await asyncio.sleep(0.01)
                return await super().acomplete(request)
            finally:
                with lock:
                    in_flight -= 1

    sub = Gauge(reply, model_name="sub")
    root = ScriptedClient([repl("out = llm_query_batched([f'p{i}' for i in range(20)])\nFINAL(repr(out))")])
    result = RLM(backend=root, other_backends=[sub], max_concurrent_subcalls=4).completion("ctx")
    out = eval(result.response)
    assert out[:3] == ["P0", "P1", "P2"] and out[4:] == [f"P{i}" for i in range(4, 20)]
    assert out[3].startswith("Error: ProviderError") and "boom" in out[3]
    assert 1 < peak <= 4


def test_out_of_iterations_asks_for_a_final_answer() -> None:
    root = ScriptedClient([repl("print(1)"), repl("print(2)"), "FINAL(extracted)"])
    result = RLM(backend=root, max_iterations=2).completion("ctx")
    assert result.stop_reason is StopReason.MAX_ITERATIONS
    assert result.response == "extracted"
    assert "run out of turns" in last_user_message(root.requests[2])


def test_max_timeout_stops_the_run() -> None:
    root = ScriptedClient([repl("import time\nfor _ in range(100): time.sleep(0.01)")] * 50, latency=0.05)
    result = RLM(backend=root, max_timeout=0.5).completion("ctx")
    assert result.stop_reason is StopReason.TIMEOUT and "max_timeout" in (result.error or "")


def test_persistent_turns_see_earlier_contexts_and_histories() -> None:
    root = ScriptedClient(
        [
            repl("FINAL(context)"),
            repl("FINAL(context_0 + '+' + context + '+' + str(len(history_0)))"),
        ]
    )
    with RLM(backend=root, persistent=True) as rlm:
        assert rlm.completion("first").response == "first"
        second = rlm.completion("second")
    assert second.response.startswith("first+second+")
    assert int(second.response.rsplit("+", 1)[1]) >= 3
    assert "turn 1" in root.requests[1].messages[1].content


def test_custom_tools_callable_and_value() -> None:
    def lookup(key: str) -> str:
        """Look a key up in the company directory."""
        return {"ada": "engineer"}[key]

    root = ScriptedClient([repl("FINAL(lookup('ada') + str(LIMIT))")])
    result = RLM(backend=root, custom_tools={"lookup": lookup, "LIMIT": 3}).completion("ctx")
    assert result.response == "engineer3"
    assert "company directory" in root.requests[0].messages[0].content


def test_fallback_routing_tries_the_next_model_on_provider_errors() -> None:
    root = ScriptedClient([repl("FINAL(llm_query('q'))")], model_name="root")
    flaky = ScriptedClient(
        fail_on=lambda index, request: ProviderError("down", client="flaky"), model_name="flaky"
    )
    backup = ScriptedClient(["from-backup"], model_name="backup")
    result = RLM(backend=root, other_backends=[flaky, backup], routing="fallback").completion("ctx")
    assert result.response == "from-backup"
    assert flaky.calls == 1 and backup.calls == 1


def test_custom_routing_policy_object() -> None:
    class AlwaysBig:
        def select(self, request: LMRequest, clients: Any) -> str:
            return "big" if request.depth else clients.tiers[0]

    root = ScriptedClient([repl("FINAL(llm_query('q'))")])
    small = ScriptedClient(["small"], model_name="small")
    big = ScriptedClient(["big"], model_name="big")
    assert (
        RLM(backend=root, other_backends=[small, big], routing=AlwaysBig()).completion("c").response == "big"
    )


def test_provider_failure_of_the_root_model_ends_with_an_error() -> None:
    root = ScriptedClient(fail_on=lambda i, r: ProviderError("503 from provider", client="root"))
    result = RLM(backend=root).completion("ctx")
    assert result.stop_reason is StopReason.ERROR and "503 from provider" in (result.error or "")


def test_completion_inside_a_running_loop_and_concurrent_acompletions() -> None:
    async def main() -> list[str]:
        inside = RLM(backend=ScriptedClient([repl("FINAL('sync-in-loop')")])).completion("c")
        rlm = RLM(backend=ScriptedClient(lambda r: repl("FINAL(context)"), latency=0.01))
        results = await asyncio.gather(*(rlm.acompletion(f"ctx{i}") for i in range(10)))
        return [inside.response, *(r.response for r in results)]

    responses = asyncio.run(main())
    assert responses == ["sync-in-loop", *(f"ctx{i}" for i in range(10))]


def test_observers_get_events_and_a_raising_one_never_breaks_a_run() -> None:
    seen: list[str] = []

    class Observer:
        @rlm_core.hookimpl
        def rlm_on_event(self, event: Any) -> None:
            seen.append(event.kind.value)

    class Broken:
        @rlm_core.hookimpl
        def rlm_on_event(self, event: Any) -> None:
            raise RuntimeError("observer bug")

    registry = get_registry()
    registry.register_plugin(Observer(), name="test-observer")
    registry.register_plugin(Broken(), name="test-broken")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = RLM(backend=ScriptedClient([repl("FINAL('ok')")])).completion("c")
            RLM(backend=ScriptedClient([repl("FINAL('ok')")])).completion("c")
    finally:
        registry.unregister_plugin("test-observer")
        registry.unregister_plugin("test-broken")
    assert result.response == "ok"
    assert seen[0] == "run_start" and seen[-1] == "run_end"
    assert {"lm_call_start", "lm_call_end", "code_start", "code_end", "iteration_end"} <= set(seen)
    assert sum("observer bug" in str(w.message) for w in caught) == 1


def test_an_answer_before_any_code_is_the_models_answer() -> None:
    # The core takes the model's finish as it stands; judging it is left to whoever reads the result.
    root = ScriptedClient(["FINAL(1000)", repl("print(context.count('x'))"), "FINAL(3)"])
    result = RLM(backend=root).completion("x x x")
    assert (result.response, result.stop_reason, result.answer_source) == ("1000", StopReason.FINAL, "final")
    assert root.calls == 1


def test_prose_is_never_taken_as_the_answer_but_the_last_turn_reply_is_read_as_one() -> None:
    root = ScriptedClient(
        [repl("print(context.count('x'))"), "There are 3.", "Final answer: There are 3 x characters."]
    )
    result = RLM(backend=root, max_iterations=2).completion("x x x")
    assert "FINAL(your answer)" in root.requests[2].messages[-2].content  # the plain note on the prose
    assert root.requests[2].purpose == "extract"
    assert result.stop_reason is StopReason.MAX_ITERATIONS
    # Read out of the reply to "answer now", without its label, and said to be so.
    assert result.response == "There are 3 x characters."
    assert result.answer_source == "last_turn_extract"


def test_repeated_identical_block_gets_a_nudge() -> None:
    root = ScriptedClient([repl("print(context[:3])"), repl("print(context[:3])"), "FINAL(abc)"])
    RLM(backend=root).completion("abcdef")
    assert "ran this exact code before" in last_user_message(root.requests[2])


def test_no_strategy_is_the_default_for_clients_that_offer_none() -> None:
    root = ScriptedClient(["FINAL(1000)"], model_name="qwen2.5-coder-1.5b")
    with RLM(backend=root) as rlm:
        assert rlm.strategy is None
        assert rlm.completion("c").response == "1000"


def test_history_compaction_keeps_the_conversation_in_the_window() -> None:
    root = ScriptedClient(
        [repl(f"print('{i}' * 3000)") for i in range(8)] + [repl("FINAL(str(len(history_0)))")],
        context_window=4000,
    )
    result = RLM(backend=root, max_iterations=12).completion("c")
    assert int(result.response) > 0
    sizes = [sum(len(m.content) for m in r.messages) for r in root.requests]
    assert max(sizes[4:]) < 4000 * 3.5
    assert any("were removed to fit" in m.content for m in root.requests[-1].messages)


def test_an_environment_that_breaks_unexpectedly_still_gives_a_result_and_a_full_log() -> None:
    events: list[Any] = []

    class Recorder:
        def on_event(self, event: Any) -> None:
            events.append(event.kind)

        def close(self) -> None:
            pass

    class Exploding:
        async def start(self, host: Any, tools: Any) -> None: ...
        async def load_context(self, index: int, value: Any) -> None: ...
        async def load_history(self, index: int, messages: Any) -> None: ...
        async def close(self) -> None: ...

        async def execute(self, code: str, timeout: Any = None) -> Any:
            raise OSError("engine connection reset")

    class ExplodingPlugin:
        @rlm_core.hookimpl
        def rlm_register_environments(self, register: Any) -> None:
            register("exploding", lambda **kwargs: Exploding())

    registry = get_registry()
    registry.register_plugin(ExplodingPlugin(), name="test-exploding")
    try:
        rlm = RLM(backend=ScriptedClient([repl("print(1)")]), environment="exploding", logger=Recorder())
        result = rlm.completion("ctx")
    finally:
        registry.unregister_plugin("test-exploding")
    assert result.stop_reason is StopReason.ERROR
    assert "OSError: engine connection reset" in (result.error or "")
    assert events[0] is EventKind.RUN_START and events[-1] is EventKind.RUN_END


def test_events_never_carry_secrets_and_the_context_travels_as_a_preview() -> None:
    seen: list[Any] = []

    class Observer:
        @rlm_core.hookimpl
        def rlm_on_event(self, event: Any) -> None:
            seen.append(event)

    fake_key = "sk-" + "proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4"  # key-shaped, built at run time
    root = ScriptedClient([repl(f"print('token is {fake_key}')"), repl("FINAL('ok')")])
    registry = get_registry()
    registry.register_plugin(Observer(), name="test-secret-observer")
    try:
        result = RLM(backend=root).completion("x" * 100_000)
    finally:
        registry.unregister_plugin("test-secret-observer")
    assert result.response == "ok" and len(result.prompt) == 100_000  # the caller's result is untouched
    assert fake_key in root.requests[1].messages[-1].content  # the model itself saw its real output
    code_end = next(e for e in seen if e.kind is EventKind.CODE_END)
    assert fake_key not in code_end.data["result"].stdout and "[REDACTED]" in code_end.data["result"].stdout
    run_end = next(e for e in seen if e.kind is EventKind.RUN_END)
    assert len(run_end.data["result"].prompt) == 500
