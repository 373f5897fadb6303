"""The runs the tests drive: two models of a loopback OpenAI-compatible server (real HTTP through
the openai SDK), scripted per request. Imports only rlm-core, so a fresh interpreter can use it
without loading OpenTelemetry."""

from __future__ import annotations

from typing import Any

from rlm_core import RLM
from rlm_core.testing import LoopbackLLMServer, repl
from rlm_core.types import RLMChatCompletion

ROOT, SUB = "root-model", "sub-model"
CHILD_TASK = "child task"

# The run the tree tests and the export test drive: a batch of 8 sub-calls and a child RLM.
FAN_OUT_CODE = (
    "out = llm_query_batched([f'item {i}' for i in range(8)])\n"
    f"child = rlm_query({CHILD_TASK!r})\n"
    "print(len(out), child)"
)
FAN_OUT_TURNS = [repl(FAN_OUT_CODE), repl("FINAL('done')")]

# Its span tree, as (name, [children in start order]).
Shape = tuple[str, list[Any]]
_SLOT: Shape = ("execute_tool llm_query", [(f"chat {SUB}", [])])
_CHILD_RUN: Shape = (
    "invoke_agent rlm",
    [("rlm.iteration", [(f"chat {SUB}", []), ("execute_tool repl", [_SLOT])])],
)
FAN_OUT_SHAPE: Shape = (
    "invoke_agent rlm",
    [
        (
            "rlm.iteration",
            [
                (f"chat {ROOT}", []),
                (
                    "execute_tool repl",
                    [
                        ("execute_tool llm_query_batched", [_SLOT] * 8),
                        ("execute_tool rlm_query", [_CHILD_RUN]),
                    ],
                ),
            ],
        ),
        ("rlm.iteration", [(f"chat {ROOT}", []), ("execute_tool repl", [])]),
    ],
)
FAN_OUT_SPANS = 31


def count(shape: Shape) -> int:
    return 1 + sum(count(child) for child in shape[1])


def make_rlm(server: LoopbackLLMServer, **kwargs: Any) -> RLM:
    """An RLM whose root and sub tiers are two models of the loopback server, over the openai SDK."""
    return RLM(**server.rlm_tiers(ROOT, SUB), **kwargs)


def scripted(
    root_turns: list[str], sub_reply: str = "leaf answer", child_turns: list[str] | None = None
) -> Any:
    """A reply function for the server: the root model answers ``root_turns`` turn by turn, a child
    RLM (a sub-model request with the engine's system prompt) ``child_turns``, and every plain
    sub-call ``sub_reply``."""
    child = child_turns or [repl("FINAL(llm_query('inner question'))")]

    def reply(request: dict[str, Any]) -> str:
        messages = request["messages"]
        turn = sum(1 for m in messages if m["role"] == "assistant")
        if request["model"] == ROOT:
            return root_turns[min(turn, len(root_turns) - 1)]
        if messages and messages[0]["role"] == "system":
            return child[min(turn, len(child) - 1)]
        return sub_reply

    return reply


def fan_out(server: LoopbackLLMServer) -> RLMChatCompletion:
    """The fan-out run (a batch of 8 and a child RLM, max_depth=2) against ``server``."""
    server.reset()
    server.set_replies(scripted(FAN_OUT_TURNS))
    with make_rlm(server, max_depth=2) as rlm:
        result = rlm.completion("a context of a few words")
    assert result.response == "done", result.error
    return result
