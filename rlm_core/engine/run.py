"""One run of the root loop: ask the root model, run its code, feed the output back, until it answers.

A child RLM (``rlm_query``) is another Run at a greater depth that shares the parent's broker (so
limits, the sub-call limit and the ledger are shared) but has its own environment. Calls from REPL
code are served by ``HostCalls``; keeping the conversation in the window by ``Compactor``. The run
only reads the model's finish and states plain facts (``guidance.notes``); anything more is the
run's strategy's (``guidance.strategy``), applied by ``StrategyDriver`` and logged under its name.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from rlm_core.config import RunSettings
from rlm_core.engine import cells, child_runs, root_calls
from rlm_core.engine.broker import Broker, RoutePlan
from rlm_core.engine.cells import CellScope
from rlm_core.engine.compaction import Compactor
from rlm_core.engine.emitter import Emitter, new_span_id
from rlm_core.engine.hostcalls import HostCalls
from rlm_core.engine.run_metadata import run_metadata
from rlm_core.engine.strategy_driver import StrategyDriver
from rlm_core.engine.tokens import TYPICAL_BYTES_PER_TOKEN
from rlm_core.environments.base import Environment
from rlm_core.errors import BudgetExceededError, CallLimitError, CostLimitError, ProviderError, RLMError
from rlm_core.events import (
    CodeEnded,
    CodeStarted,
    EventKind,
    IterationEnded,
    IterationStarted,
    RunEnded,
    RunStarted,
)
from rlm_core.guidance import prompts
from rlm_core.guidance.notes import PlainNotes
from rlm_core.guidance.parsing import parse_reply
from rlm_core.guidance.strategy import StartView, Strategy, TurnView, author_of
from rlm_core.records import CodeBlockRecord, IterationRecord, SubCallRecord
from rlm_core.redact import redact_text
from rlm_core.types import AnswerSource, LMRequest, Message, RLMChatCompletion, StopReason, TokenUsage

logger = logging.getLogger("rlm_core.engine.run")


EnvironmentFactory = Callable[[], Awaitable[Environment]]


def _stop_for(exc: BudgetExceededError) -> StopReason:
    if isinstance(exc, CostLimitError):
        return StopReason.COST_LIMIT
    if isinstance(exc, CallLimitError):
        return StopReason.CALL_LIMIT
    # A child run's "root" calls spend the sub tier: for it, that is its own root budget.
    return StopReason.ROOT_BUDGET


class Run:
    def __init__(
        self,
        *,
        broker: Broker,
        emitter: Emitter,
        settings: RunSettings,
        environment: Environment,
        environment_factory: EnvironmentFactory,
        context: Any,
        root_prompt: str | None,
        depth: int = 0,
        parent_run_id: str | None = None,
        parent_span_id: str | None = None,
        turn: int = 0,
        deadline: float | None = None,
        strategy: Strategy | None = None,
        labels: dict[str, Any] | None = None,
    ) -> None:
        self.broker = broker
        self.labels = dict(labels or {})  # the caller's labels for the log (RunMetadata.extra)
        self.emitter = emitter
        self.settings = settings
        self.environment = environment
        self.environment_factory = environment_factory
        self.context = context
        self.root_prompt = root_prompt
        self.depth = depth
        self.parent_run_id = parent_run_id
        self.parent_span_id = parent_span_id
        self.turn = turn
        self.run_id = uuid.uuid4().hex
        self.span_id = self.run_id  # a run's span is its run id, so logs and events agree on both
        self.deadline = deadline
        self.strategy = strategy
        self.messages: list[Message] = []
        self.iterations = 0
        self.cell: CellScope | None = None  # the code cell running now: host calls file under it
        self.all_subcalls: list[SubCallRecord] = []
        self._unfinished_cell: CellScope | None = None  # a cell that raised: an interruption logs it
        self._partial = ""
        self._answer_source: str | None = None
        self._stop = StopReason.FINAL  # why the run ends when an iteration returns an answer
        self._cells: list[CodeBlockRecord] = []  # every cell of the run, for the strategy's view
        self._logged: set[int] = set()  # ids of the messages an iteration record already holds
        self._iteration_span: str | None = None
        self.ledger = broker.ledger
        self.ledger.add_run(self.run_id, parent_run_id)
        self.host_call = HostCalls(self, self._child_run)
        self.compactor = Compactor(environment, turn, settings.compaction_threshold)
        self.root_client = self._tier_client()
        self.root_model: str = str(
            getattr(self.root_client, "model_name", "") or type(self.root_client).__name__
        )
        self.notes = PlainNotes()
        self.driver = StrategyDriver(strategy, self)

    # -- helpers -------------------------------------------------------------------------------

    def _tier_client(self) -> Any:
        """The client this run's tier is configured with. It names the root model in the run's
        metadata; the routing policy is asked per call (each call's record says which model served
        it), never here with a made-up request."""
        clients = self.broker.clients
        return clients.clients[clients.for_depth(self.depth)]

    def emit(self, kind: EventKind, payload: Any, span_id: str, parent_span_id: str | None) -> None:
        if self.emitter.active:
            self.emitter.emit(
                kind,
                payload,
                run_id=self.run_id,
                depth=self.depth,
                span_id=span_id,
                parent_span_id=parent_span_id,
                parent_run_id=self.parent_run_id,
            )

    def _root_request(
        self, messages: list[Message], purpose: str = "root", max_tokens: int | None = None
    ) -> LMRequest:
        return LMRequest(
            messages=list(messages),
            depth=self.depth,
            purpose=purpose,
            run_id=self.run_id,
            max_tokens=max_tokens,
            parent_span_id=self._iteration_span or self.span_id,
        )

    @property
    def sub_max_tokens(self) -> int | None:
        """The output cap of this run's sub-calls: a strategy's, or None (the client's own)."""
        return self.driver.sub_cap

    # -- child runs (rlm_query) ----------------------------------------------------------------

    async def _child_run(self, prompt: Any, record: SubCallRecord) -> str:
        environment = await self.environment_factory()
        child = Run(
            broker=self.broker,
            emitter=self.emitter,
            settings=self.settings,
            environment=environment,
            environment_factory=self.environment_factory,
            context=prompt,
            root_prompt=None,
            depth=self.depth + 1,
            parent_run_id=self.run_id,
            parent_span_id=record.span_id,
            deadline=self.deadline,
            strategy=self.strategy,
        )
        return await child_runs.run_child(child, environment, prompt, record, self.settings.custom_tools)

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> RLMChatCompletion:
        started = time.perf_counter()
        system, system_author = self._system_prompt()
        self.emit(
            EventKind.RUN_START,
            RunStarted(run_metadata(self, system, system_author)),
            self.span_id,
            self.parent_span_id,
        )
        self.messages = [
            Message("system", system, author=system_author),
            Message(
                "user", prompts.first_user_message(self.context, self.root_prompt, self.turn), author="engine"
            ),
        ]
        stop = StopReason.MAX_ITERATIONS
        error: str | None = None
        answer: str | None = None
        try:
            answer, stop = await self._with_deadline(self._loop())
        except BudgetExceededError as exc:
            stop, error = _stop_for(exc), str(exc)
        except TimeoutError:
            stop, error = StopReason.TIMEOUT, f"the run exceeded max_timeout={self.settings.max_timeout}s"
        except ProviderError as exc:
            stop, error = StopReason.ERROR, f"model call failed: {exc}"
        except asyncio.CancelledError:
            self._finish(None, StopReason.CANCELLED, "the run was cancelled", started)
            raise
        except RLMError as exc:
            stop, error = StopReason.ERROR, str(exc)
        except Exception as exc:
            # A bug or an unexpected library error still ends with a result and a complete log.
            stop, error = StopReason.ERROR, f"internal error: {type(exc).__name__}: {exc}"
            logger.exception("rlm run %s failed unexpectedly", self.run_id)
        if answer is None and stop is StopReason.MAX_ITERATIONS:
            answer, self._answer_source = await root_calls.last_turn(self, prompts.OUT_OF_TURNS_NOTE)
            if answer is None:
                error = error or f"no final answer within max_iterations={self.settings.max_iterations}"
        return self._finish(answer, stop, error, started)

    def _system_prompt(self) -> tuple[str, str]:
        """The system prompt and its author: the user's own, else the strategy's, else the core's."""
        if self.settings.custom_system_prompt:
            return self.settings.custom_system_prompt, "user"
        default = prompts.system_prompt(self.context, self.settings.custom_tools)
        if self.strategy is None:
            return default, "engine"
        own = self.strategy.system_prompt(self._start_view(default))
        return (own, author_of(self.strategy)) if own else (default, "engine")

    def _start_view(self, default_system_prompt: str) -> StartView:
        return StartView(
            run_id=self.run_id,
            depth=self.depth,
            context=self.context,
            root_prompt=self.root_prompt,
            root_model=self.root_model,
            default_system_prompt=default_system_prompt,
            tools=dict(self.settings.custom_tools),
        )

    def _finish(
        self, answer: str | None, stop: StopReason, error: str | None, started: float
    ) -> RLMChatCompletion:
        duration = time.perf_counter() - started
        source = self._answer_source if answer is not None else None
        if answer is None and self._partial:
            source = AnswerSource.PARTIAL.value
        result = RLMChatCompletion(
            root_model=self.root_model,
            prompt=self.context,
            response=answer if answer is not None else self._partial,
            usage_summary=self.ledger.summary(self.run_id),
            execution_time=duration,
            stop_reason=stop,
            error=redact_text(error) if error else error,
            iterations=self.iterations,
            run_id=self.run_id,
            answer_source=source,
        )
        self.emit(EventKind.RUN_END, RunEnded(result, duration), self.span_id, self.parent_span_id)
        return result

    async def _with_deadline(
        self, work: Awaitable[tuple[str | None, StopReason]]
    ) -> tuple[str | None, StopReason]:
        if self.deadline is None:
            return await work
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        return await asyncio.wait_for(work, timeout=remaining)

    async def _loop(self) -> tuple[str | None, StopReason]:
        for number in range(1, self.settings.max_iterations + 1):
            self.iterations = number
            final = await self._iteration(number)
            if final is not None:
                return final, self._stop
        return None, StopReason.MAX_ITERATIONS

    async def _iteration(self, number: int) -> str | None:
        span = new_span_id()
        self._iteration_span = span
        self.emit(EventKind.ITERATION_START, IterationStarted(number), span, self.span_id)
        started = time.perf_counter()
        mark = self.ledger.mark()
        # Ask the policy once per turn: the client it picks decides the window and the output cap.
        plan = self.broker.plan(self._root_request(self.messages))
        if self.compactor.needed(self.messages, plan.context_window):
            self.messages = await self.compactor.compact(self.messages)
        record = IterationRecord(
            run_id=self.run_id,
            iteration=number,
            depth=self.depth,
            timestamp=time.time(),
            span_id=span,
            parent_span_id=self.span_id,
        )
        try:
            final = await self._turn(number, record, plan)
        except (asyncio.CancelledError, KeyboardInterrupt):
            self._record_interruption(record)
            raise
        finally:
            own_tier = "root" if self.depth == 0 else "sub"
            record.root_usage = self.ledger.usage_since(mark, self.run_id, own_tier, own_run_only=True)
            record.sub_usage = (
                self.ledger.usage_since(mark, self.run_id, "sub") if self.depth == 0 else TokenUsage()
            )
            record.calls = [o for o in self.ledger.select(since=mark) if o.run_id == self.run_id]
            record.duration = time.perf_counter() - started
            self.emit(EventKind.ITERATION_END, IterationEnded(record, record.duration), span, self.span_id)
            self._iteration_span = None
        return final

    def _record_interruption(self, record: IterationRecord) -> None:
        """The run was cancelled mid-iteration: the cell that was running and the sub-calls still in
        flight go into the iteration's record, so the log shows where the run stopped."""
        cell, self._unfinished_cell = self._unfinished_cell, None
        if cell is not None:
            record.code_blocks.append(cell.interrupted())
        record.notes.append("interrupted: the run was cancelled during this iteration")

    async def _turn(self, number: int, record: IterationRecord, plan: RoutePlan) -> str | None:
        if number == 1:
            await self.driver.start(record, self._start_view(self.messages[0].content))
        record.new_messages = self._unlogged_messages()
        response = await self.ask_root(self.messages, "root", plan)
        reply = parse_reply(response.text)
        record.response = response.text
        if reply.prose:  # set before the code runs: an interrupted run returns it as its partial answer
            self._partial = reply.prose
        self.messages.append(Message("assistant", response.text, author="model"))
        feedback: list[str] = []
        final: str | None = None
        source: str | None = None
        for index, code in enumerate(reply.code_blocks):
            block = await self.execute_cell(code)
            record.code_blocks.append(block)
            feedback.append(
                prompts.execution_feedback(code, self.shown_output(block), index, len(reply.code_blocks))
            )
            if block.final_answer is not None:
                final, source = block.final_answer, block.final_source or AnswerSource.FINAL.value
                break
        if final is None and (reply.final_text is not None or reply.final_var is not None):
            final, source = await root_calls.final_from_text(
                self.environment, reply.final_text, reply.final_var, feedback
            )
        if final is not None:  # the model's own finish: nothing may refuse or rewrite it
            return self._answered(record, final, source or AnswerSource.FINAL.value, StopReason.FINAL)
        notes = self.notes.after_cells(record.code_blocks, self._sub_window_chars)
        if not reply.code_blocks and reply.final_text is None and reply.final_var is None:
            ran_code = any(cell.author == "model" for cell in self._cells)  # a strategy's cells do not count
            notes.insert(0, self.notes.no_code(ran_code=ran_code))
        record.notes.extend(note.log for note in notes)
        feedback.extend(note.message for note in notes)
        feedback.append(prompts.CONTINUE_PROMPT)
        self.messages.append(Message("user", "\n\n".join(feedback), author="engine"))
        view = TurnView(
            run_id=self.run_id,
            depth=self.depth,
            iteration=number,
            max_iterations=self.settings.max_iterations,
            context=self.context,
            root_prompt=self.root_prompt,
            reply=response.text,
            cells=tuple(record.code_blocks),
            history=tuple(self._cells),
            notes=tuple(note.message for note in notes),
            last_turn=number >= self.settings.max_iterations,
        )
        accepted = await self.driver.on_turn(record, view)
        if accepted is not None:
            answer, source, stop = accepted
            return self._answered(record, answer, source, stop)
        return None

    def _unlogged_messages(self) -> list[Message]:
        """The messages no iteration record holds yet: the engine's feedback, a strategy's, a
        compaction note (the system prompt is in the run's metadata; the model's reply is the
        record's ``response``)."""
        fresh = [m for m in self.messages if id(m) not in self._logged]
        self._logged.update(id(m) for m in fresh)
        return [m for m in fresh if m.role != "system" and m.author != "model"]

    def _answered(self, record: IterationRecord, answer: str, source: str, stop: StopReason) -> str:
        record.final_answer, record.answer_source = answer, source
        self._answer_source, self._stop = source, stop
        return answer

    def shown_output(self, block: CodeBlockRecord) -> str:
        limit = min(self.settings.max_output_chars, self.driver.output_cap or self.settings.max_output_chars)
        return cells.shown_output(block, limit)

    async def execute_cell(self, code: str, author: str = "model") -> CodeBlockRecord:
        span = new_span_id()
        parent = self._iteration_span or self.span_id
        self.emit(EventKind.CODE_START, CodeStarted(code), span, parent)
        started_at, started = time.time(), time.perf_counter()
        cell = CellScope(span, CodeBlockRecord(code=code, span_id=span, started_at=started_at, author=author))
        self.cell, self._unfinished_cell = cell, None
        try:
            result = await self.environment.execute(code, timeout=self.settings.cell_timeout)
        except BaseException:
            self._unfinished_cell = cell
            raise
        finally:
            self.cell = None
        wall = time.perf_counter() - started  # includes the sub-calls and child runs the cell waited for
        subcalls = cell.subcalls
        self.all_subcalls.extend(subcalls)
        self.emit(EventKind.CODE_END, CodeEnded(code, result, wall), span, parent)
        block = cells.block_record(code, result, subcalls)
        block.span_id, block.started_at, block.duration = span, started_at, wall
        block.author = author
        self._cells.append(block)
        return block

    def _sub_window_chars(self) -> int | None:
        """The window of the sub-model this run's ``llm_query`` goes to, in characters of typical
        text (asked only when needed, so a stateful routing policy is not consulted for nothing)."""
        request = LMRequest(messages=[], depth=self.depth + 1, run_id=self.run_id)
        window = self.broker.plan(request).context_window
        return int(window * TYPICAL_BYTES_PER_TOKEN) if window is not None else None

    async def ask_root(
        self,
        messages: list[Message],
        purpose: str,
        plan: RoutePlan | None = None,
        schema: dict[str, Any] | None = None,
    ) -> Any:
        """A root call, with the output cap of the client the routing policy picked (lowered only by
        a strategy's ``CapCall``); ``schema`` asks for structured output."""
        request = self._root_request(messages, purpose)
        request.response_schema = schema
        plan = plan or self.broker.plan(request)
        request.max_tokens = self.driver.root_cap(plan.max_tokens)
        return await self.broker.complete(request, plan)
