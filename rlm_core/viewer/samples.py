"""Real sample logs for the viewer's tests, demo and benchmark: scripted models, real RLM runs.

Every line comes from ``RLM.completion`` with ``RLMLogger``; nothing here writes JSON by hand.
"""

from __future__ import annotations

from pathlib import Path

from rlm_core import RLM
from rlm_core.clients.base import Price
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


def write_sample_logs(log_dir: Path) -> Path:
    """A directory with two runs: the rich one ("How many?") and the budget stop ("Never ends?")."""
    write_rich_run(log_dir)
    write_budget_stop_run(log_dir)
    return log_dir


def write_large_run(
    log_dir: Path, *, subcalls: int = 2000, response_chars: int = 24_000, iterations: int = 40
) -> Path:
    """A big run: ``subcalls`` batched sub-calls over ``iterations`` turns, each answering ``response_chars``.

    With the defaults the log is about 50 MB, most of it sub-call responses (as with long summaries).
    """
    per_turn = max(1, subcalls // iterations)
    # Each turn's code differs: the engine's guards refuse a block identical to the last one.
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
