"""The strategy contract with scripted models: each action, its log entry and event, provenance,
how a strategy is chosen, and the do-no-harm suite with no strategy at all."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import rlm_core
from rlm_core import RLM, RLMLogger
from rlm_core.errors import ConfigurationError, ProviderError, UnknownNameError
from rlm_core.events import EventKind
from rlm_core.guidance.strategy import (
    AcceptAnswer,
    Action,
    AskForFinal,
    BaseStrategy,
    CapCall,
    CapOutput,
    Choose,
    RunCode,
    StartView,
    Tell,
    TurnView,
)
from rlm_core.loggers.jsonl import read_trajectory
from rlm_core.plugins import get_registry
from rlm_core.testing import ScriptedClient
from rlm_core.testing.strategy_contract import StrategyContract, assert_model_words_are_the_models, repl
from rlm_core.types import StopReason


class Scripted(BaseStrategy):
    """A strategy whose actions the test gives: ``start`` once, then ``turns[i]`` after turn i+1."""

    name = "scripted"

    def __init__(
        self, start: Sequence[Action] = (), turns: Sequence[Sequence[Action]] = (), system: str | None = None
    ) -> None:
        self.start, self.turns, self.system = list(start), list(turns), system
        self.views: list[TurnView] = []

    def system_prompt(self, view: StartView) -> str | None:
        return self.system

    def on_start(self, view: StartView) -> Sequence[Action]:
        return self.start

    def on_turn(self, view: TurnView) -> Sequence[Action]:
        self.views.append(view)
        index = len(self.views) - 1
        return self.turns[index] if index < len(self.turns) else ()


def last(request: Any) -> Any:
    return request.messages[-1]


class Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def on_event(self, event: Any) -> None:
        self.events.append(event)


# -- the core on its own -----------------------------------------------------------------------


class TestNoStrategy(StrategyContract):
    def make_strategy(self) -> Any:
        return None


def test_final_of_an_expression_that_raised_lets_the_model_answer_next_turn() -> None:
    root = ScriptedClient([repl("FINAL(len(hits))"), repl("hits = context.split()\nFINAL(len(hits))")])
    result = RLM(backend=root, strategy=None).completion("a b c")
    assert (result.response, result.stop_reason, result.answer_source) == ("3", StopReason.FINAL, "final")
    assert "NameError" in root.requests[1].messages[-1].content


def test_a_repeated_block_gets_a_plain_note_and_still_runs() -> None:
    root = ScriptedClient([repl("print(len(context))")] * 3 + ["FINAL(6)"])
    recorder = Recorder()
    result = RLM(backend=root, strategy=None, logger=recorder).completion("abcdef")
    assert result.response == "6"
    cells = [e for e in recorder.events if e.kind is EventKind.CODE_END]
    assert len(cells) == 3  # the core runs whatever the model sends
    assert "ran this exact code before" in root.requests[2].messages[-1].content


def test_an_oversized_sub_prompt_gets_a_note_with_the_size_that_fits() -> None:
    too_long = ProviderError(
        "HTTP 400: request (33218 tokens) exceeds the available context size (8192 tokens)"
    )
    sub = ScriptedClient(["short"], model_name="sub", fail_on={0: too_long}, context_window=8192)
    root = ScriptedClient([repl("llm_query('q: ' + context)"), "FINAL(x)"])
    RLM(backend=root, other_backends=[sub]).completion("abc" * 100)
    note = root.requests[1].messages[-1].content
    assert "too long for the helper model" in note and "17,203 characters" in note


def test_no_output_cap_and_no_prompt_change_without_a_strategy() -> None:
    root = ScriptedClient([repl("print(context)"), "FINAL(ok)"], model_name="tiny-1.5b")
    RLM(backend=root).completion("x" * 20_000)
    capable = ScriptedClient([repl("print(context)"), "FINAL(ok)"], model_name="gpt-5")
    RLM(backend=capable).completion("x" * 20_000)
    assert [r.max_tokens for r in root.requests] == [r.max_tokens for r in capable.requests]
    shown = root.requests[1].messages[-1].content
    # Only the RLM's own max_output_chars (10,000) shortens the output: no cap for a "small" name.
    assert "characters omitted" in shown and shown.count("x") >= 9_000


# -- each action -------------------------------------------------------------------------------


def test_tell_is_a_user_message_of_the_strategy_logged_as_an_action(tmp_path: Path) -> None:
    strategy = Scripted(turns=[[Tell("Look for the word 'b'.", why="a hint")]])
    root = ScriptedClient([repl("print(1)"), "FINAL(b)"])
    recorder = Recorder()
    with RLM(backend=root, strategy=strategy, logger=[recorder, RLMLogger(log_dir=tmp_path)]) as rlm:
        result = rlm.completion("a b c", root_prompt="which?")
    told = last(root.requests[1])
    assert (told.role, told.author, told.content) == ("user", "strategy:scripted", "Look for the word 'b'.")
    assert root.requests[1].messages[-2].author == "engine"  # the engine's output feedback comes first
    acted = [e for e in recorder.events if e.kind is EventKind.STRATEGY_ACTION]
    assert [e.data["action"]["action"] for e in acted] == ["tell"]
    assert acted[0].data["strategy"] == "scripted"
    assert acted[0].parent_span_id  # nested under its iteration
    trajectory = read_trajectory(result.log_path)
    first = trajectory.iterations[0]
    assert [(a.strategy, a.action, a.detail["why"]) for a in first.actions] == [
        ("scripted", "tell", "a hint")
    ]
    lines = [json.loads(line) for line in Path(result.log_path).read_text().splitlines()]
    assert lines[0]["strategy"] == "scripted" and lines[0]["schema_version"] == 3
    assert {m["author"] for m in lines[1]["new_messages"]} == {"engine"}
    assert lines[-1]["answer_source"] == "final"


def test_run_code_is_a_cell_of_the_strategy_shown_as_the_engines(tmp_path: Path) -> None:
    strategy = Scripted(start=[RunCode("hits = context.split()\nprint(len(hits))", why="count words")])
    root = ScriptedClient([repl("FINAL(len(hits))")])
    with RLM(backend=root, strategy=strategy, logger=RLMLogger(log_dir=tmp_path)) as rlm:
        result = rlm.completion("a b c")
    assert result.response == "3" and result.answer_source == "final"
    shown = last(root.requests[0])
    assert shown.role == "user" and shown.author == "strategy:scripted"
    assert "The engine ran this code for you" in shown.content and "3" in shown.content
    assert not any(m.role == "assistant" for m in root.requests[0].messages)
    cells = read_trajectory(result.log_path).iterations[0].code_blocks
    assert [c.author for c in cells] == ["strategy:scripted", "model"]


def test_an_accepted_answer_is_the_strategys_never_final() -> None:
    strategy = Scripted(turns=[[AcceptAnswer("b", why="took it")]])
    root = ScriptedClient([repl("print(context[2])"), "FINAL(never asked)"])
    result = RLM(backend=root, strategy=strategy).completion("a b c")
    assert (result.response, result.stop_reason, result.answer_source) == (
        "b",
        StopReason.STRATEGY,
        "strategy:scripted",
    )
    assert not result.ok and root.calls == 1


def test_ask_for_final_takes_only_a_final_the_model_writes() -> None:
    strategy = Scripted(turns=[[AskForFinal("Enough searching.")], [AskForFinal("Again.")]])
    root = ScriptedClient([repl("print(1)"), "I think it is b.", repl("print(2)"), "FINAL(b)"])
    recorder = Recorder()
    result = RLM(backend=root, strategy=strategy, logger=recorder).completion("a b c")
    assert (result.response, result.stop_reason, result.answer_source) == ("b", StopReason.FINAL, "final")
    asks = [r for r in root.requests if r.purpose == "extract"]
    assert len(asks) == 2 and last(asks[0]).author == "strategy:scripted"
    assert last(asks[0]).content.startswith("Enough searching.")
    # The unanswered ask and its prose reply are in the action's record, not in the conversation.
    assert "I think it is b." not in [m.content for m in root.requests[2].messages]
    acted = [e.data["action"] for e in recorder.events if e.kind is EventKind.STRATEGY_ACTION]
    assert acted[0]["reply"] == "I think it is b."


def test_caps_only_lower_what_the_client_allows() -> None:
    for client_cap, expected in [(50, 50), (4000, 120), (None, 120)]:
        sub = ScriptedClient(["a"], model_name="sub")
        sub.max_tokens = client_cap  # type: ignore[attr-defined]
        root = ScriptedClient([repl("print(llm_query('q'))"), "FINAL(done)"], model_name="root")
        root.max_tokens = client_cap  # type: ignore[attr-defined]
        strategy = Scripted(start=[CapCall(120, "root"), CapCall(120, "sub")])
        RLM(backend=root, other_backends=[sub], strategy=strategy).completion("x")
        assert [r.max_tokens for r in root.requests] == [expected, expected]
        assert [r.max_tokens for r in sub.requests] == [expected]


def test_cap_output_shortens_what_the_model_is_shown() -> None:
    strategy = Scripted(start=[CapOutput(300)])
    root = ScriptedClient([repl("print(context)"), "FINAL(ok)"])
    RLM(backend=root, strategy=strategy).completion("y" * 5_000)
    shown = root.requests[1].messages[-1].content
    assert "characters omitted" in shown and shown.count("y") <= 310


def test_a_strategys_system_prompt_is_recorded_as_its_own() -> None:
    recorder = Recorder()
    root = ScriptedClient(["FINAL(1)"])
    RLM(backend=root, strategy=Scripted(system="Be brief."), logger=recorder).completion("x")
    assert root.requests[0].messages[0].content == "Be brief."
    metadata = recorder.events[0].data["metadata"]
    assert metadata.system_prompt_author == "strategy:scripted" and metadata.strategy == "scripted"


def test_a_custom_system_prompt_is_the_users() -> None:
    recorder = Recorder()
    root = ScriptedClient(["FINAL(1)"])
    RLM(
        backend=root, custom_system_prompt="Mine.", strategy=Scripted(system="Theirs."), logger=recorder
    ).completion("x")
    assert root.requests[0].messages[0].content == "Mine."
    assert recorder.events[0].data["metadata"].system_prompt_author == "user"


# -- a strategy that misbehaves ----------------------------------------------------------------


class Raising(BaseStrategy):
    name = "raising"

    def on_turn(self, view: TurnView) -> Sequence[Action]:
        raise RuntimeError("bug in the strategy")


def test_a_strategy_that_raises_ends_the_run_with_an_error_naming_it() -> None:
    root = ScriptedClient([repl("print(1)"), "FINAL(x)"])
    result = RLM(backend=root, strategy=Raising()).completion("x")
    assert result.stop_reason is StopReason.ERROR
    assert "strategy 'raising' raised in on_turn" in (result.error or "")


def test_on_start_may_not_answer() -> None:
    root = ScriptedClient(["FINAL(x)"])
    result = RLM(backend=root, strategy=Scripted(start=[AcceptAnswer("x")])).completion("x")
    assert result.stop_reason is StopReason.ERROR and "from on_start" in (result.error or "")
    assert root.calls == 0


def test_something_that_is_not_an_action_is_refused() -> None:
    root = ScriptedClient([repl("print(1)"), "FINAL(x)"])
    result = RLM(backend=root, strategy=Scripted(turns=[["just a string"]])).completion("x")  # type: ignore[list-item]
    assert result.stop_reason is StopReason.ERROR and "Tell, RunCode" in (result.error or "")


def test_bad_action_values_fail_where_they_are_made() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        CapCall(0)
    with pytest.raises(ValueError, match="tier"):
        CapCall(10, "other")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chars"):
        CapOutput(5)


# -- choosing a strategy -----------------------------------------------------------------------


class Offering(ScriptedClient):
    default_strategy = "scripted-offer"


class OfferPlugin:
    @rlm_core.hookimpl
    def rlm_register_strategies(self, register: Any) -> None:
        register("scripted-offer", lambda **kw: Scripted(turns=[[Tell("from the offer")]], **kw))


@pytest.fixture
def offer_plugin() -> Any:
    registry = get_registry()
    registry.register_plugin(OfferPlugin(), name="offer-test")
    yield
    registry.unregister_plugin("offer-test")


@pytest.mark.usefixtures("offer_plugin")
def test_auto_takes_the_strategy_the_root_client_offers_and_none_turns_it_off() -> None:
    with RLM(backend=Offering(["FINAL(1)"])) as rlm:
        assert rlm.strategy is not None and rlm.strategy.name == "scripted"
    with RLM(backend=Offering(["FINAL(1)"]), strategy=None) as rlm:
        assert rlm.strategy is None
    with RLM(backend=Offering(["FINAL(1)"]), strategy="none") as rlm:
        assert rlm.strategy is None


@pytest.mark.usefixtures("offer_plugin")
def test_a_strategy_by_name_with_its_settings() -> None:
    with RLM(
        backend=ScriptedClient(["FINAL(1)"]), strategy="scripted-offer", strategy_kwargs={"system": "S"}
    ) as rlm:
        assert rlm.strategy is not None and rlm.strategy.system_prompt(None) == "S"  # type: ignore[arg-type]


def test_bad_strategy_choices_fail_at_construction() -> None:
    root = ScriptedClient(["FINAL(1)"])
    with pytest.raises(UnknownNameError, match="small-mode"):
        RLM(backend=root, strategy="small-mode")
    with pytest.raises(ConfigurationError, match="not a Strategy"):
        RLM(backend=root, strategy=object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="strategy_kwargs"):
        RLM(backend=root, strategy=None, strategy_kwargs={"x": 1})
    with pytest.raises(ConfigurationError, match="strategy_kwargs"):
        RLM(backend=root, strategy=Scripted(), strategy_kwargs={"x": 1})


def test_provenance_holds_across_every_action() -> None:
    strategy = Scripted(
        start=[RunCode("print('warm')"), Tell("hello")],
        turns=[[Tell("t1"), RunCode("print('again')")], [AskForFinal("now")]],
    )
    replies = (repl("print(1)"), repl("print(2)"), "no final here", repl("print(3)"), "FINAL(done)")
    root = ScriptedClient(list(replies))
    result = RLM(backend=root, strategy=strategy).completion("ctx")
    assert result.response == "done"
    assert_model_words_are_the_models(root.requests, replies)


def test_choose_asks_a_typed_question_and_carries_out_the_picked_options_actions() -> None:
    plans = Choose(
        "Which plan?",
        {"count": (Tell("Plan: count with code."),), "read": (Tell("Plan: read it."),)},
        why="the model picks",
    )

    def model(request: Any) -> str:
        return '{"answer": "count"}' if request.purpose == "choose" else "FINAL(2)"

    root = ScriptedClient(model)
    recorder = Recorder()
    result = RLM(backend=root, strategy=Scripted(start=[Tell("before"), plans]), logger=recorder).completion(
        "a b"
    )
    assert result.response == "2"
    choose, turn = root.requests
    assert choose.purpose == "choose" and choose.response_schema is not None
    assert choose.messages[-2].content == "before"  # what was said first is part of the question
    assert "Which plan?" in choose.messages[-1].content and '"count", "read"' in choose.messages[-1].content
    assert [m.content for m in turn.messages[2:]] == ["before", "Plan: count with code."]
    acted = [e.data["action"] for e in recorder.events if e.kind is EventKind.STRATEGY_ACTION]
    assert [a["action"] for a in acted] == ["tell", "choose", "tell"]
    assert acted[1]["picked"] == "count" and acted[1]["options"]["read"][0]["text"] == "Plan: read it."


def test_a_pick_that_is_no_option_carries_out_nothing() -> None:
    plans = Choose("Which?", {"a": (Tell("A"),), "b": (Tell("B"),)})
    root = ScriptedClient(lambda r: "neither" if r.purpose == "choose" else "FINAL(1)")
    RLM(backend=root, strategy=Scripted(start=[plans])).completion("x")
    assert not {"A", "B"} & {m.content for m in root.requests[1].messages}


def test_choose_options_are_checked() -> None:
    with pytest.raises(ValueError, match="two options"):
        Choose("q", {"only": ()})
    with pytest.raises(ValueError, match="tell, run code or set caps"):
        Choose("q", {"a": (AcceptAnswer("x"),), "b": ()})
