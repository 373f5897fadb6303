"""Applying a run's strategy: ask it at the start and after each unfinished turn, carry out its
actions, and log every one of them under its name (an event and an entry in the iteration record).

What the strategy says goes to the model in a user message of its own; code it runs is a cell with
the strategy as author; an answer it accepts ends the run with ``stop_reason="strategy"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from rlm_core.engine import root_calls
from rlm_core.engine.emitter import new_span_id
from rlm_core.environments.base import Environment
from rlm_core.errors import StrategyError
from rlm_core.events import EventKind, StrategyActed
from rlm_core.guidance.strategy import (
    START_ACTIONS,
    AcceptAnswer,
    Action,
    AskForFinal,
    CapCall,
    CapOutput,
    Choose,
    RunCode,
    StartView,
    Strategy,
    Tell,
    TurnView,
    author_of,
    describe,
)
from rlm_core.records import ActionRecord, CodeBlockRecord, IterationRecord
from rlm_core.types import Message, StopReason


class RunControls(Protocol):
    """What the driver may do to the run it serves (``engine.run.Run`` provides it): the driver
    sees this much and no more, so the run loop and the strategy machinery do not import each
    other."""

    span_id: str
    messages: list[Message]

    def emit(self, kind: EventKind, payload: Any, span_id: str, parent_span_id: str | None) -> None: ...

    def shown_output(self, block: CodeBlockRecord) -> str: ...

    async def execute_cell(self, code: str, author: str = "model") -> CodeBlockRecord: ...

    # and what engine.root_calls needs to ask the run's model (RootCaller)
    environment: Environment

    async def ask_root(
        self, messages: list[Message], purpose: str, plan: Any = None, schema: dict[str, Any] | None = None
    ) -> Any: ...


Accepted = tuple[str, str, StopReason]  # (answer, answer_source, stop_reason)


class StrategyDriver:
    """One run's strategy (or none) and the caps its actions set."""

    def __init__(self, strategy: Strategy | None, run: RunControls) -> None:
        self.strategy = strategy
        self.run = run
        self.author = author_of(strategy) if strategy is not None else ""
        self._root_cap: int | None = None
        self.sub_cap: int | None = None
        self.output_cap: int | None = None

    def root_cap(self, client_max: Any) -> int | None:
        """The output cap of a root call: the client's own unless a strategy lowered it."""
        if self._root_cap is None:
            return None
        if isinstance(client_max, int) and client_max > 0:
            return min(self._root_cap, client_max)
        return self._root_cap

    async def start(self, record: IterationRecord, view: StartView) -> None:
        if self.strategy is None:
            return
        actions = self._ask("on_start", view)
        for action in actions:
            if not isinstance(action, START_ACTIONS):
                raise StrategyError(
                    f"strategy {self.strategy.name!r} returned {type(action).__name__} from on_start, "
                    "which may only tell, run code or set caps (there is no turn to answer yet)"
                )
        await self._apply(actions, record)

    async def on_turn(self, record: IterationRecord, view: TurnView) -> Accepted | None:
        if self.strategy is None:
            return None
        return await self._apply(self._ask("on_turn", view), record)

    # -- helpers -------------------------------------------------------------------------------

    def _ask(self, method: str, view: Any) -> Sequence[Action]:
        assert self.strategy is not None
        try:
            actions = getattr(self.strategy, method)(view)
        except Exception as exc:
            raise StrategyError(
                f"strategy {self.strategy.name!r} raised in {method}: {type(exc).__name__}: {exc}"
            ) from exc
        actions = list(actions or ())
        for action in actions:
            if not isinstance(action, (Tell, RunCode, AcceptAnswer, AskForFinal, CapCall, CapOutput, Choose)):
                raise StrategyError(
                    f"strategy {self.strategy.name!r} returned {action!r} from {method}; return "
                    "actions of rlm_core.guidance.strategy (Tell, RunCode, AcceptAnswer, AskForFinal, "
                    "CapCall, CapOutput, Choose)"
                )
        return actions

    async def _apply(self, actions: Sequence[Action], record: IterationRecord) -> Accepted | None:
        said: list[str] = []
        try:
            for action in actions:
                detail: dict[str, Any] = {}
                if isinstance(action, Tell):
                    said.append(action.text)
                elif isinstance(action, RunCode):
                    said.append(await self._run_code(action, record))
                elif isinstance(action, CapCall):
                    if action.tier == "root":
                        self._root_cap = action.max_tokens
                    else:
                        self.sub_cap = action.max_tokens
                elif isinstance(action, CapOutput):
                    self.output_cap = action.chars
                elif isinstance(action, AcceptAnswer):
                    self._log(record, action)
                    return action.text, self.author, StopReason.STRATEGY
                elif isinstance(action, Choose):
                    self._flush(said)  # what was said before the question is part of it
                    picked, reply = await root_calls.ask_to_choose(
                        self.run, action.question, list(action.options), self.author
                    )
                    detail.update(picked=picked, reply=reply)
                    self._log(record, action, detail)
                    if picked is not None:
                        await self._apply(action.options[picked], record)
                    continue
                elif isinstance(action, AskForFinal):
                    self._flush(said)
                    answer, source, reply = await root_calls.ask_for_final(self.run, action.why, self.author)
                    detail["reply"] = reply
                    self._log(record, action, detail)
                    if answer is not None and source is not None:
                        return answer, source, StopReason.FINAL  # the model's own FINAL
                    continue  # no FINAL: the run goes on; the reply is in this action's record
                self._log(record, action, detail)
        finally:
            self._flush(said)
        return None

    async def _run_code(self, action: RunCode, record: IterationRecord) -> str:
        cell = await self.run.execute_cell(action.code, author=self.author)
        record.code_blocks.append(cell)
        output = self.run.shown_output(cell).rstrip() or "(no output)"
        name = self.strategy.name if self.strategy is not None else ""
        if action.shown is not None:
            return (
                f"The engine ran code for you (strategy {name!r}), not written by you: {action.shown}\n"
                f"Output:\n```output\n{output}\n```"
            )
        return (
            f"The engine ran this code for you (strategy {name!r}); you did not write it:\n"
            f"```repl\n{action.code.rstrip()}\n```\nOutput:\n```output\n{output}\n```"
        )

    def _flush(self, said: list[str]) -> None:
        if said:
            self.run.messages.append(Message("user", "\n\n".join(said), author=self.author))
            said.clear()

    def _log(self, record: IterationRecord, action: Action, extra: dict[str, Any] | None = None) -> None:
        assert self.strategy is not None
        detail = {**describe(action), **(extra or {})}
        kind = detail.pop("action")
        record.actions.append(ActionRecord(self.strategy.name, kind, detail))
        self.run.emit(
            EventKind.STRATEGY_ACTION,
            StrategyActed(self.strategy.name, {"action": kind, **detail}, record.iteration),
            new_span_id(),
            record.span_id or self.run.span_id,
        )
