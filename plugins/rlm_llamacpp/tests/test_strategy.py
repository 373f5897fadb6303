"""The small-model strategy with scripted models (no llama.cpp needed): the do-no-harm contract,
what it adds, and that the embedded client offers it."""

from __future__ import annotations

import math
from typing import Any

from rlm_llamacpp.client import LlamaCppClient
from rlm_llamacpp.strategy import SmallModelStrategy, helpers_code

from rlm_core import RLM
from rlm_core.events import EventKind
from rlm_core.testing import ScriptedClient
from rlm_core.testing.strategy_contract import StrategyContract, repl, scripted_model, turns_asked
from rlm_core.types import StopReason


class TestSmallModelDoesNoHarm(StrategyContract):
    def make_strategy(self) -> Any:
        return "small-model"


class TestSmallModelWithoutHelpersDoesNoHarm(StrategyContract):
    def make_strategy(self) -> Any:
        return SmallModelStrategy(helpers=False)


class Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def on_event(self, event: Any) -> None:
        self.events.append(event)


def test_the_embedded_client_offers_the_strategy() -> None:
    assert LlamaCppClient.default_strategy == "small-model"


def test_the_helpers_search_list_and_ask_each_item() -> None:
    context = "Intro line.\nThe passcode for the vault is amber-9. More text follows here.\nEnd."
    root = scripted_model(
        (
            repl("hits = find_text('PASSCODE', 'vault')"),
            repl("items = list_items()\nprint(ask_each(items, 'Is it about a vault?', ['yes', 'no']))"),
            "FINAL(amber-9)",
        ),
        "root",
    )
    sub = ScriptedClient(["no", "yes", "no"], model_name="sub")
    result = RLM(backend=root, other_backends=[sub], strategy="small-model").completion(
        context, root_prompt="What is the passcode?"
    )
    assert result.response == "amber-9" and result.answer_source == "final"
    turns = [r for r in root.requests if r.purpose == "root"]
    first_output = turns[1].messages[-2].content
    assert "1 passage(s):" in first_output and "amber-9" in first_output
    second_output = turns[2].messages[-2].content
    assert "3 items." in second_output and "['no', 'yes', 'no']" in second_output
    assert [r.max_tokens for r in sub.requests] == [200, 200, 200]
    # each sub-call carries the run's question as background, then the model's own question
    assert (
        sub.requests[0]
        .messages[-1]
        .content.startswith(
            "The whole task, for background: What is the passcode?\n\n"
            "Answer this about one item: Is it about a vault?\n\nItem: Intro line."
        )
    )
    assert all(r.max_tokens == 400 for r in root.requests)


def test_ask_each_sent_again_reuses_its_answers_and_says_so() -> None:
    cell = repl("print(ask_each(list_items(), 'Is it spam?', ['spam', 'ham']))")
    root = scripted_model((cell, cell, "FINAL(1)"), "root")
    sub = ScriptedClient(["spam", "ham"], model_name="sub")
    result = RLM(backend=root, other_backends=[sub], strategy="small-model").completion(
        "win a prize\nsee you at 6", root_prompt="How many are spam?"
    )
    assert result.response == "1"
    assert len(sub.requests) == 2  # two items, asked once although the cell ran twice
    # The note is the only difference in the output, so the block counts as sent again: the next
    # call asks for the final answer, and shows the note.
    assert root.requests[-1].purpose == "extract"
    again = "\n".join(m.content for m in root.requests[-1].messages[-3:])
    assert "asked before; these are its answers" in again and "['spam', 'ham']" in again


def test_the_question_is_restated_after_a_turn_without_an_answer() -> None:
    root = scripted_model((repl("print(len(context))"), "FINAL(3)"), "root")
    RLM(backend=root, strategy="small-model").completion("abc", root_prompt="How long is it?")
    turns = [r for r in root.requests if r.purpose == "root"]
    told = turns[1].messages[-1]
    assert told.author == "strategy:small-model" and "The question is: How long is it?" in told.content


def test_the_same_block_with_the_same_output_asks_for_the_final_answer() -> None:
    recorder = Recorder()
    root = scripted_model((repl("print(len(context))"), repl("print(len(context))"), "FINAL(3)"), "root")
    result = RLM(backend=root, strategy="small-model", logger=recorder).completion(
        "abc", root_prompt="How long?"
    )
    assert (result.response, result.stop_reason, result.answer_source) == ("3", StopReason.FINAL, "final")
    assert root.requests[-1].purpose == "extract"
    assert root.requests[-1].messages[-1].author == "strategy:small-model"
    actions = [e.data["action"]["action"] for e in recorder.events if e.kind is EventKind.STRATEGY_ACTION]
    assert "ask_for_final" in actions


def test_a_final_that_raised_gets_a_quoting_tip_and_is_not_an_answer() -> None:
    root = scripted_model((repl("FINAL(GR-348)"), 'FINAL("GR-348")'), "root")
    result = RLM(backend=root, strategy="small-model").completion("GR-348", root_prompt="Which code?")
    assert result.response == "GR-348" and turns_asked(root) == 2
    turns = [r for r in root.requests if r.purpose == "root"]
    assert any("quote it" in m.content for m in turns[1].messages[-2:])


def test_a_search_that_found_nothing_is_told_what_else_to_try_not_asked_for_a_guess() -> None:
    search = repl("find_text('spam', 'ham')")
    root = scripted_model((search, search, search, "FINAL(0)"), "root")
    recorder = Recorder()
    RLM(backend=root, strategy="small-model", logger=recorder).completion(
        "Instance 1 | win a prize now\nInstance 2 | see you at 6", root_prompt="How many are spam?"
    )
    acted = [e.data["action"] for e in recorder.events if e.kind is EventKind.STRATEGY_ACTION]
    after_turns = [
        a["action"]
        for a in acted
        if a["action"] in ("tell", "ask_for_final")
        and a["why"] != "the question, and what to do"
        and not a["why"].startswith("the model chose the plan")
    ]
    # Twice told to try other words or ask_each; after a third empty run, asked for the answer.
    assert after_turns == ["tell", "tell", "ask_for_final"]
    told = next(a["text"] for a in acted if a.get("why") == "the model's search found nothing")
    assert "ask_each" in told


def test_final_in_lower_case_finishes_as_final_does() -> None:
    root = scripted_model((repl("final('amber-9')"),), "root")
    result = RLM(backend=root, strategy="small-model").completion("x", root_prompt="Which?")
    assert (result.response, result.answer_source, result.stop_reason) == (
        "amber-9",
        "final",
        StopReason.FINAL,
    )
    without = scripted_model((repl("final('amber-9')"), "FINAL(done)"), "root")
    assert (
        RLM(backend=without, strategy=None).completion("x").response == "done"
    )  # only the strategy defines it


def test_ask_each_asks_again_when_a_slot_failed() -> None:
    from rlm_llamacpp.strategy import helpers_code

    calls: list[list[str]] = []

    def batched(prompts: list[str], choices: Any = None) -> list[str]:
        calls.append(prompts)
        return ["Error: TimeoutError: slow"] + ["spam"] * (len(prompts) - 1)

    scope: dict[str, Any] = {"context": "a\nb", "llm_query_batched": batched, "FINAL": print}
    exec(helpers_code("How many?"), scope)
    scope["ask_each"](["a", "b"], "Spam?", ["spam", "ham"])
    scope["ask_each"](["a", "b"], "Spam?", ["spam", "ham"])
    assert len(calls) == 2


def test_ask_each_takes_out_the_sub_models_lean_with_batch_calibration() -> None:
    """A sub-model that scores every item 'spam' first (as the 1.5B model does) but the real spam
    higher: its own picks would all be 'spam'; calibrated over the batch, the four are."""
    from rlm_core.testing import OpenAIServer

    spam = {"win a prize now", "free ringtones text WIN", "claim your cash", "urgent: you have won"}
    items = [*sorted(spam), "see you at 6", "ok thanks mum", "running late", "lunch?", "call me", "love you"]

    def token_scores(body: dict[str, Any], text: str) -> list[tuple[str, float]]:
        item = body["messages"][-1]["content"].split("Item: ")[1].split("\n")[0]
        return [("spam", -0.05), ("ham", -3.0)] if item in spam else [("spam", -0.4), ("ham", -1.1)]

    code = "answers = ask_each(list_items(), 'Is it spam?', ['spam', 'ham'])\nprint(answers.count('spam'))"
    root = scripted_model((repl(code), "FINAL(4)"), "root")
    with OpenAIServer(["spam"]) as server:
        server.token_scores = token_scores
        sub = {"model_name": "sub", "api_key": "k", "base_url": server.base_url}
        result = RLM(
            backend=root, other_backends=["openai"], other_backend_kwargs=[sub], strategy="small-model"
        ).completion("\n".join(items), root_prompt="How many are spam?")
        sent = server.requests
    assert result.response == "4"
    turns = [r for r in root.requests if r.purpose == "root"]
    assert (
        "```output\n10 items." in turns[1].messages[-2].content and "\n4\n" in turns[1].messages[-2].content
    )
    assert len(sent) == 10 and all(body["top_logprobs"] == 20 for body in sent)  # each item scored once


def test_ask_each_falls_back_to_the_models_own_pick_without_scores() -> None:
    code = "print(ask_each(list_items(), 'Is it spam?', ['spam', 'ham']))"
    root = scripted_model((repl(code), "FINAL(1)"), "root")
    sub = ScriptedClient(["spam", "ham"], model_name="sub")  # gives no token log-probabilities
    RLM(backend=root, other_backends=[sub], strategy="small-model").completion(
        "win a prize\nsee you at 6", root_prompt="How many are spam?"
    )
    turns = [r for r in root.requests if r.purpose == "root"]
    assert "['spam', 'ham']" in turns[1].messages[-2].content
    assert sub.calls == 2  # the scored call was refused before any tokens were spent


def test_a_printed_truth_value_is_followed_by_a_yes_or_no_reminder_and_the_answer_stays_the_models() -> None:
    root = scripted_model((repl("print(3 > 2)"), "FINAL(True)"), "root")
    result = RLM(backend=root, strategy="small-model").completion("x", root_prompt="Is 3 more than 2?")
    assert result.response == "True" and result.answer_source == "final"  # told, never rewritten
    turns = [r for r in root.requests if r.purpose == "root"]
    told = [m for m in turns[1].messages if m.author == "strategy:small-model"]
    assert any("FINAL(yes) for True" in m.content for m in told)
    assert all(m.role != "assistant" for m in told)


def _helpers(question: str, picks: list[str]) -> dict[str, Any]:
    """The helper cell run in a plain scope whose llm_query_batched gives these picks, no scores."""
    from rlm_llamacpp.strategy import helpers_code

    def batched(prompts: list[str], choices: Any = None, scores: bool = False) -> list[Any]:
        if scores:
            raise RuntimeError("this client gives no token log-probabilities")
        return picks[: len(prompts)]

    scope: dict[str, Any] = {"context": "", "llm_query_batched": batched, "FINAL": print}
    exec(helpers_code(question), scope)
    return scope


def test_ask_each_prints_how_often_each_choice_was_answered(capsys: Any) -> None:
    scope = _helpers("Which label, 'spam' or 'ham', is the least common?", ["ham", "spam", "ham", "maybe"])
    answers = scope["ask_each"](["a", "b", "c", "d"], "Spam or ham?", ["spam", "ham"])
    assert answers == ["ham", "spam", "ham", "maybe"]  # returned as answered; the tally only prints
    printed = capsys.readouterr().out
    assert (
        "ask_each: 4 answers. 'ham': 2, 'spam': 1, not one of the choices: 1 "
        "(most often: 'ham'; least often: 'spam')" in printed
    )
    assert "is a word of the task" not in printed


def test_a_tie_names_no_most_or_least_and_the_repeat_prints_the_tally_again(capsys: Any) -> None:
    scope = _helpers("Are there more 'yes' than 'no'?", ["yes", "no"])
    scope["ask_each"](["a", "b"], "Yes?", ["yes", "no"])
    scope["ask_each"](["a", "b"], "Yes?", ["yes", "no"])
    printed = capsys.readouterr().out
    assert printed.count("ask_each: 2 answers. 'yes': 1, 'no': 1\n") == 2 and "most often" not in printed


def test_ask_each_warns_when_no_choice_is_a_word_of_the_task(capsys: Any) -> None:
    """Small models copy the worked example's labels; the output says so, the answers stay."""
    scope = _helpers("How many messages are 'spam'?", ["bug", "request"])
    assert scope["ask_each"](["a", "b"], "Bug?", ["bug", "request"]) == ["bug", "request"]
    assert "none of the choices ['bug', 'request'] is a word of the task" in capsys.readouterr().out
    scope = _helpers("How many Requests are there?", ["bug", "request"])
    scope["ask_each"](["a", "b"], "Bug?", ["bug", "request"])  # a plural, in any case, is the word
    assert "is a word of the task" not in capsys.readouterr().out


def test_the_model_picks_a_plan_first_and_is_told_what_it_picked() -> None:
    root = scripted_model(("FINAL(2)",), "root")  # picks the first option, "judge each item"
    recorder = Recorder()
    result = RLM(backend=root, strategy="small-model", logger=recorder).completion(
        "a\nb", root_prompt="How many lines?"
    )
    assert result.response == "2" and result.answer_source == "final"
    asked = [r for r in root.requests if r.purpose == "choose"]
    assert len(asked) == 1 and "which kind of question this is" in asked[0].messages[-1].content
    options = asked[0].response_schema["properties"]["answer"]["enum"]
    assert options == ["judge each item", "look up", "something else"]
    turn = next(r for r in root.requests if r.purpose == "root")
    told = [m for m in turn.messages if m.author == "strategy:small-model"]
    assert any(m.content.startswith("Then: items = list_items()") for m in told)
    assert all(m.role != "assistant" for m in turn.messages)
    acted = [e.data["action"] for e in recorder.events if e.kind is EventKind.STRATEGY_ACTION]
    assert any(a["action"] == "choose" and a.get("picked") == "judge each item" for a in acted)


def test_without_a_plan_the_model_is_not_asked_to_choose() -> None:
    root = scripted_model(("FINAL(2)",), "root")
    RLM(backend=root, strategy=SmallModelStrategy(plan=False)).completion(
        "a\nb", root_prompt="How many lines?"
    )
    assert all(r.purpose != "choose" for r in root.requests)


def _helper_scope() -> dict[str, Any]:
    scope: dict[str, Any] = {"context": "", "FINAL": print}
    exec(helpers_code("Which are spam?"), scope)
    return scope


def test_two_choices_are_cut_where_the_items_fall_apart_keeping_their_shares() -> None:
    """10 of 40 items score clearly higher for 'spam', and all lean to 'spam' (as the 1.5B sub-model
    does): the cut between the two groups finds the 10, where dividing by the batch mean moves the
    cut towards an even split."""
    spam = [2.6 + 1.6 * i / 9 for i in range(10)]
    ham = [0.4 + 1.8 * i / 29 for i in range(30)]
    scored = [{"spam": -0.01, "ham": -0.01 - odds} for odds in spam + ham]
    picks = _helper_scope()["_rlm_calibrated"](scored, ["spam", "ham"])
    assert picks == ["spam"] * 10 + ["ham"] * 30
    p_spam = [1 / (1 + math.exp(-odds)) for odds in spam + ham]
    mean = sum(p_spam) / 40
    assert sum(1 for p in p_spam if p / mean > (1 - p) / (1 - mean)) == 21  # batch calibration alone


def test_without_two_groups_two_choices_fall_back_to_batch_calibration() -> None:
    scope = _helper_scope()
    # One peaked bump (a Laplace distribution's quantiles): any cut splits one group in two.
    one_bump = [
        math.log(2 * p) if p < 0.5 else -math.log(2 - 2 * p) for p in ((i + 0.5) / 40 for i in range(40))
    ]
    assert scope["_rlm_two_groups"](one_bump) is None
    assert scope["_rlm_two_groups"]([1.0] * 12) is None  # all the same: nothing to cut
    assert scope["_rlm_two_groups"]([0.0] * 6 + [3.0] * 6) == 1.5
