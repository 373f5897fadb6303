"""The environment contract: where REPL code runs, and how it calls back into the host."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol, runtime_checkable

from rlm_core.types import ExecResult  # the result type lives with the other shared records

__all__ = ["Environment", "ExecResult", "HostCall"]

# A host call: ``await host(function, args)`` where function is "llm_query", "llm_query_batched",
# "rlm_query", "rlm_query_batched" or the name of a host-side custom tool.
HostCall = Callable[[str, dict[str, Any]], Coroutine[Any, Any, Any]]


@runtime_checkable
class Environment(Protocol):
    """A REPL the engine runs code in. One instance serves one RLM (and its persistent turns).

    The engine calls ``start`` once, then ``load_context``/``load_history`` and ``execute`` as the run
    goes, and ``close`` at the end (or when the RLM closes, if persistent). All methods are coroutines
    run on the engine's event loop; blocking work belongs in a thread.
    """

    async def start(self, host: HostCall, tools: dict[str, Any]) -> None:
        """Prepare the REPL. ``host`` serves sub-calls; ``tools`` are the RLM's ``custom_tools``."""
        ...

    async def load_context(self, index: int, value: Any) -> None:
        """Bind ``context_{index}`` and make ``context`` point at it (the newest)."""
        ...

    async def load_history(self, index: int, messages: list[dict[str, str]]) -> None:
        """Bind ``history_{index}``: the message list of an earlier turn (persistent mode)."""
        ...

    async def execute(self, code: str, timeout: float | None = None) -> ExecResult:
        """Run one cell; never raises for errors in the code itself (they go in ``ExecResult.error``)."""
        ...

    async def close(self) -> None:
        """Release everything; safe to call twice."""
        ...
