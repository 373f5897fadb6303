"""Real sample logs for the viewer's tests, demo and benchmark: scripted models, real RLM runs.

Every line comes from ``RLM.completion`` with ``RLMLogger``; nothing here writes JSON by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rlm_core import RLM
from rlm_core.clients.base import Price
from rlm_core.guidance.strategy import (
    AcceptAnswer,
    Action,
    AskForFinal,
    BaseStrategy,
    CapOutput,
    RunCode,
    StartView,
    Tell,
    TurnView,
)
from rlm_core.loggers.jsonl import RLMLogger
from rlm_core.testing import ScriptedClient
from rlm_core.types import LMRequest

ROOT_PRICE = Price(input_per_mtok=3.0, output_per_mtok=15.0)
SUB_PRICE = Price(input_per_mtok=0.25, output_per_mtok=1.25)


def repl(code: str) -> str:
    """A reply that runs ``code`` in the REPL."""
    return f"I will look at the context.\n```repl\n{code}\n```"


def _echo_upper(request: LMRequest) -> str:
    return f"summary of {request.messages[-1].content[:40]}".upper()


def _child_reply(request: LMRequest) -> str:
    # One client answers both plain llm_query calls and the child RLM's own root loop.
    if request.messages[0].role != "system":
        return _echo_upper(request)
    if any(m.role == "assistant" for m in request.messages):
        return "FINAL(4 letters)"
    return repl("x = llm_query(context)\nprint(x)")


def write_rich_run(log_dir: Path) -> Path:
    """One finished run with a plain sub-call, a batched call of 4 slots and a child RLM (depth 2)."""
    root = ScriptedClient(
        [
            repl("n = len(context)\nfirst = llm_query('what is the first word?')\nprint(n, first)"),
            repl("parts = llm_query_batched([f'chunk {i}' for i in range(4)])\nprint(parts)"),
            repl("child = rlm_query('count the letters in: abcd')\nprint('child said', child)"),
            repl("raise ValueError('a deliberate bad cell')"),
            "All done.\nFINAL(the answer is 42)",
        ],
        model_name="root-model",
        price=ROOT_PRICE,
    )
    child = ScriptedClient(_child_reply, model_name="child-model", price=SUB_PRICE)
    leaf = ScriptedClient(_echo_upper, model_name="leaf-model", price=SUB_PRICE)
    with RLMLogger(log_dir=log_dir) as logger:
        rlm = RLM(
            backend=root,
            other_backends=[child, leaf],
            max_depth=2,
            max_iterations=8,
            max_cost=1.0,
            logger=logger,
        )
        result = rlm.completion("The quick brown fox jumps over the lazy dog. " * 20, root_prompt="How many?")
    assert result.log_path is not None
    return Path(result.log_path)


def write_budget_stop_run(log_dir: Path) -> Path:
    """A run stopped by max_iterations: it never gives a final answer in time."""
    root = ScriptedClient([repl("print('still thinking')")] * 3 + ["FINAL(gave up)"], model_name="root-model")
    with RLMLogger(log_dir=log_dir) as logger:
        result = RLM(backend=root, max_iterations=2, logger=logger).completion(
            "ctx", root_prompt="Never ends?"
        )
    assert result.log_path is not None
    return Path(result.log_path)


COUNT_CODE = "words = context.split()\nprint(len(words), 'words')"


class CountingStrategy(BaseStrategy):
    """A sample strategy for the viewer's demo log (not rlm-llamacpp's small-model strategy, which
    never supplies an answer): it counts the words itself, says so, asks for the final answer early
    and, when the model still gives none, accepts the count."""

    name = "word-count"

    def on_start(self, view: StartView) -> Sequence[Action]:
        return (
            RunCode(COUNT_CODE, why="count the words first"),
            Tell("The count is printed above: check it, then answer.", why="restate the question"),
            CapOutput(2000, why="a small model reads short outputs better"),
        )

    def on_turn(self, view: TurnView) -> Sequence[Action]:
        if view.iteration == 1:
            return (AskForFinal(why="The word count is known."),)
        return (AcceptAnswer("9 words", why="the model printed the count again but never called FINAL"),)


def write_strategy_run(log_dir: Path) -> Path:
    """A run a strategy helped ("Who counted?"): a cell the strategy ran, its tell, an output cap, an
    early request for the final answer the model did not meet; then the model runs the strategy's
    block again (an engine note says so) and the strategy accepts an answer
    (``stop_reason="strategy"``, ``answer_source="strategy:word-count"``)."""
    root = ScriptedClient(
        [
            repl("print(words[:3])"),
            "Not sure yet: I have only seen three words.",  # the reply to the early request
            repl(COUNT_CODE),  # the strategy's own block again: the engine notes the repeat
        ],
        model_name="tiny-model",
        price=ROOT_PRICE,
    )
    with RLMLogger(log_dir=log_dir) as logger:
        rlm = RLM(backend=root, strategy=CountingStrategy(), max_iterations=4, logger=logger)
        result = rlm.completion("one two three four five six seven eight nine", root_prompt="Who counted?")
    assert result.log_path is not None
    return Path(result.log_path)


def write_sample_logs(log_dir: Path) -> Path:
    """A directory with three runs: the rich one ("How many?"), the budget stop ("Never ends?") and
    the one a strategy helped ("Who counted?")."""
    write_rich_run(log_dir)
    write_budget_stop_run(log_dir)
    write_strategy_run(log_dir)
    return log_dir


def write_large_run(
    log_dir: Path, *, subcalls: int = 2000, response_chars: int = 24_000, iterations: int = 40
) -> Path:
    """A big run: ``subcalls`` batched sub-calls over ``iterations`` turns, each answering ``response_chars``.

    With the defaults the log is about 50 MB, most of it sub-call responses (as with long summaries).
    """
    per_turn = max(1, subcalls // iterations)
    # Each turn's code (so each turn's sub-call prompts) differs, as in a real run; a repeated block
    # would run all the same, with only a plain engine note that it repeated.
    turns = [
        repl(
            f"parts = llm_query_batched([f'part {turn}.{{i}}' for i in range({per_turn})])\nprint(len(parts))"
        )
        for turn in range(iterations)
    ]
    root = ScriptedClient([*turns, "FINAL(big done)"], model_name="root-model", price=ROOT_PRICE)
    line = "A long summary line of a part of the context, as a sub-model might write it.\n"
    long_reply = (line * (response_chars // len(line) + 1))[:response_chars]
    sub = ScriptedClient(lambda request: long_reply, model_name="sub-model", price=SUB_PRICE)
    with RLMLogger(log_dir=log_dir) as logger:
        rlm = RLM(
            backend=root,
            other_backends=[sub],
            max_iterations=iterations + 2,
            max_sub_tokens=100_000_000,
            max_concurrent_subcalls=16,
            logger=logger,
        )
        result = rlm.completion("large context " * 100, root_prompt="A big run")
    assert result.log_path is not None
    return Path(result.log_path)
