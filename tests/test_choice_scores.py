"""Scored sub-calls (``llm_query(..., choices=[...], scores=True)``): each choice's first-token
log-probability, read from the provider's real Chat Completions ``logprobs`` over HTTP."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from rlm_core import RLM, RLMLogger
from rlm_core.engine.choice_scores import check_scorable, choice_scores
from rlm_core.engine.typed_answers import TypedAnswerError, answer_spec
from rlm_core.loggers.jsonl import read_trajectory
from rlm_core.testing import LoopbackLLMServer, ScriptedClient, pytest_plugin, repl

openai_server = pytest_plugin.openai_server


def test_alternatives_are_summed_per_choice_ignoring_case_spaces_and_quotes() -> None:
    alternatives = [
        ("spam", math.log(0.5)),
        (" Spam", math.log(0.2)),
        ('"', math.log(0.1)),
        ("ham", math.log(0.15)),
    ]
    scores = choice_scores(alternatives, ["spam", "ham"])
    assert scores["spam"] == pytest.approx(math.log(0.7))
    assert scores["ham"] == pytest.approx(math.log(0.15))


def test_a_token_that_begins_a_longer_choice_counts_and_an_unseen_choice_is_none() -> None:
    scores = choice_scores(
        [("pos", -0.1), ("neg", -2.5), ("positive.", -3.0)], ["positive", "negative", "neutral"]
    )
    assert scores["positive"] == pytest.approx(math.log(math.exp(-0.1) + math.exp(-3.0)))
    assert scores["negative"] == pytest.approx(-2.5)
    assert scores["neutral"] is None


@pytest.mark.parametrize(
    ("choices", "message"),
    [
        (["yes", "yesterday"], "cannot be told apart"),
        ([1, 2], "string choices"),
        (None, "needs choices"),
    ],
)
def test_unscorable_choices_are_refused_with_what_to_change(choices: Any, message: str) -> None:
    with pytest.raises(TypedAnswerError, match=message):
        check_scorable(answer_spec(choices) if choices is not None else None)


@pytest.mark.parametrize("stream", [False, True])
def test_scores_come_back_through_a_whole_run_over_http(
    openai_server: LoopbackLLMServer, stream: bool, tmp_path: Path
) -> None:
    def token_scores(body: dict[str, Any], text: str) -> list[tuple[str, float]]:
        spammy = "prize" in body["messages"][-1]["content"]
        return [("spam", -0.1), ("ham", -2.4)] if spammy else [("spam", -0.6), ("ham", -0.8)]

    openai_server.token_scores = token_scores
    openai_server.set_replies(["spam"])
    code = (
        'out = llm_query_batched(["You won a prize!", "See you at 6"], choices=["spam", "ham"], scores=True)\n'
        "print([{k: round(v, 2) for k, v in o.items()} for o in out])"
    )
    root = ScriptedClient([repl(code), "FINAL(done)"], model_name="gpt-big")
    rlm = RLM(
        backend=root,
        other_backends=["openai"],
        other_backend_kwargs=[
            {
                "model_name": "gpt-4o-mini",
                "api_key": "k",
                "base_url": openai_server.base_url,
                "stream": stream,
            }
        ],
        logger=RLMLogger(tmp_path),
    )
    result = rlm.completion("two messages", root_prompt="Which are spam?")
    rlm.close()
    assert result.response == "done"
    assert (
        "[{'spam': -0.1, 'ham': -2.4}, {'spam': -0.6, 'ham': -0.8}]" in root.requests[1].messages[-1].content
    )
    sent = openai_server.requests
    assert len(sent) == 2
    for body in sent:  # one token, its alternatives asked for, the choices named in the prompt
        assert body["logprobs"] is True and body["top_logprobs"] == 20 and body["max_tokens"] == 1
        assert 'Answer with exactly one of: "spam", "ham"' in body["messages"][-1]["content"]
    assert result.log_path is not None
    cell = read_trajectory(result.log_path).iterations[0].code_blocks[0]
    sub_calls = sorted(cell.subcalls, key=lambda c: c.batch_index or 0)
    assert [c.response for c in sub_calls] == ['{"spam": -0.1, "ham": -2.4}', '{"spam": -0.6, "ham": -0.8}']


def test_a_provider_without_logprobs_is_a_clear_error_the_code_sees() -> None:
    code = 'print(llm_query_batched(["a?"], choices=["yes", "no"], scores=True)[0][:80])'
    root = ScriptedClient([repl(code), "FINAL(done)"], model_name="gpt-big")
    sub = ScriptedClient(["yes"], model_name="sub-model")  # gives no token log-probabilities
    RLM(backend=root, other_backends=[sub]).completion("x", root_prompt="q")
    output = root.requests[1].messages[-1].content
    assert "Error: TypedAnswerError: sub-model's client gives no token log-probabilities" in output
    assert sub.calls == 0  # refused before any tokens were spent
