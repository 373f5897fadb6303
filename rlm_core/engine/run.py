"""One run of the root loop: ask the root model, run its code, feed the output back, until it answers.

A child RLM (``rlm_query``) is another Run at a greater depth that shares the parent's broker (so
limits, the sub-call limit and the ledger are shared) but has its own environment. Calls from REPL
code are served by ``HostCalls``; keeping the conversation in the window by ``Compactor``; what to
say to the model when a reply goes wrong is decided by the guards (``rlm_core.guidance``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from rlm_core._version import __version__
from rlm_core.engine.broker import Broker
from rlm_core.engine.compaction import Compactor
from rlm_core.engine.emitter import Emitter, new_span_id
from rlm_core.engine.hostcalls import HostCalls
from rlm_core.engine.tokens import TYPICAL_BYTES_PER_TOKEN
from rlm_core.environments.base import Environment, ExecResult
from rlm_core.errors import BudgetExceededError, CallLimitError, CostLimitError, ProviderError, RLMError
from rlm_core.events import (
    CodeEnded,
    CodeStarted,
    EventKind,
    IterationEnded,
    IterationStarted,
    RunEnded,
    RunStarted,
    SubcallStarted,
)
from rlm_core.guidance import prompts
from rlm_core.guidance.guards import ReplyGuards, Verdict
from rlm_core.guidance.parsing import parse_reply
from rlm_core.records import CodeBlockRecord, IterationRecord, RunMetadata, SubCallRecord
from rlm_core.redact import redact_text
from rlm_core.types import LMRequest, Message, RLMChatCompletion, StopReason, TokenUsage

logger = logging.getLogger("rlm_core.engine.run")


@attrs.define
class RunSettings:
    """The knobs of a run (the RLM passes its own)."""

    max_iterations: int = 30
    max_depth: int = 1
    max_timeout: float | None = None
    max_output_chars: int = 10_000  # of REPL output shown to the model per block
    cell_timeout: float | None = None
    system_prompt: str | None = None
    prompt_style: str = "auto"  # auto | default | small
    compaction_threshold: float = 0.8  # of the root model's window
    small_model_guards: bool = True
    custom_tools: dict[str, Any] = attrs.field(factory=dict)
    backend: str = ""
    environment: str = ""
    max_root_tokens: int = 0
    max_sub_tokens: int = 0
    max_cost: float | None = None
    max_llm_calls: int | None = None


EnvironmentFactory = Callable[[], Awaitable[Environment]]


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    return f"{text[:head]}\n[... {len(text) - limit:,} characters omitted ...]\n{text[-tail:]}"


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
    ) -> None:
        self.broker = broker
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
        self.messages: list[Message] = []
        self.iterations = 0
        self.cell_span_id: str | None = None  # the code cell running now: parent of its sub-calls
        self.cell_subcalls: list[SubCallRecord] | None = None
        self.all_subcalls: list[SubCallRecord] = []
        # What an interruption must still log: the cell running now and its sub-calls not yet ended.
        self._cell_in_flight: CodeBlockRecord | None = None
        self._subcalls_in_flight: dict[str, SubCallRecord] = {}
        self._partial = ""
        self._iteration_span: str | None = None
        self.ledger = broker.ledger
        self.ledger.add_run(self.run_id, parent_run_id)
        self.host_call = HostCalls(self, self._child_run)
        self.compactor = Compactor(environment, turn, settings.compaction_threshold)
        self.root_client = self._expected_root_client()
        self.root_model: str = str(
            getattr(self.root_client, "model_name", "") or type(self.root_client).__name__
        )
        self.guards = ReplyGuards(
            enabled=settings.small_model_guards,
            small=self._style() == "small",
            root_prompt=root_prompt,
            context=context,
        )

    # -- helpers -------------------------------------------------------------------------------

    def _expected_root_client(self) -> Any:
        """The client the policy would pick for this run's root calls (it sets the prompt style).

        A policy that fails here fails again on the first real call, inside the run, where it ends
        the run with a result and a log rather than an exception from the constructor.
        """
        try:
            return self.broker.client_for(self._root_request([]))
        except RLMError:
            clients = self.broker.clients
            return clients.clients[clients.for_depth(self.depth)]

    def emit(self, kind: EventKind, payload: Any, span_id: str, parent_span_id: str | None) -> None:
        if isinstance(payload, SubcallStarted):
            self._subcalls_in_flight[span_id] = SubCallRecord(
                call_id=payload.call_id,
                function=payload.function,
                depth=self.depth + 1,
                model=payload.model,
                span_id=span_id,
                parent_span_id=parent_span_id,
                batch_index=payload.batch_index,
                started_at=time.time(),
            )
        elif kind is EventKind.SUBCALL_END:
            self._subcalls_in_flight.pop(span_id, None)
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

    def _style(self) -> str:
        if self.settings.prompt_style != "auto":
            return self.settings.prompt_style
        if getattr(self.root_client, "prefers_small_prompt", False):
            return "small"
        return "small" if prompts.looks_like_small_model(self.root_model) else "default"

    def _metadata(self, system: str) -> RunMetadata:
        clients = self.broker.clients
        context_chars = len(self.context) if isinstance(self.context, (str, list, dict)) else 0
        return RunMetadata(
            run_id=self.run_id,
            root_model=self.root_model,
            backend=self.settings.backend,
            environment=self.settings.environment,
            started_at=time.time(),
            depth=self.depth,
            parent_run_id=self.parent_run_id,
            other_backends=[clients.backends.get(name, "") for name in clients.tiers[1:]],
            sub_models=[getattr(clients.clients[n], "model_name", n) for n in clients.tiers[1:]],
            max_iterations=self.settings.max_iterations,
            max_depth=self.settings.max_depth,
            max_root_tokens=self.settings.max_root_tokens,
            max_sub_tokens=self.settings.max_sub_tokens,
            max_timeout=self.settings.max_timeout,
            context_type=type(self.context).__name__,
            context_chars=context_chars,
            root_prompt=self.root_prompt,
            system_prompt=system,
            rlm_core_version=__version__,
            span_id=self.span_id,
            parent_span_id=self.parent_span_id,
            max_cost=self.settings.max_cost,
            max_llm_calls=self.settings.max_llm_calls,
        )

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
        )
        try:
            await environment.start(child.host_call, self.settings.custom_tools)
            await environment.load_context(0, prompt)
            result = await child.run()
        finally:
            await environment.close()
        record.child_run_id = child.run_id
        record.child_iterations = result.iterations
        record.model = child.root_model
        total = result.usage_summary.total
        record.usage = TokenUsage(total.input_tokens, total.output_tokens)
        record.cost = total.cost
        record.children = child.all_subcalls
        if result.stop_reason is StopReason.ERROR:
            raise RLMError(f"child RLM failed: {result.error}")
        return result.response

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> RLMChatCompletion:
        started = time.perf_counter()
        system = self.settings.system_prompt or prompts.system_prompt(
            self._style(), self.context, self.settings.custom_tools
        )
        self.emit(EventKind.RUN_START, RunStarted(self._metadata(system)), self.span_id, self.parent_span_id)
        self.messages = [
            Message("system", system),
            Message("user", prompts.first_user_message(self.context, self.root_prompt, self.turn)),
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
            answer = await self._extract_final()
            if answer is None:
                error = error or f"no final answer within max_iterations={self.settings.max_iterations}"
        return self._finish(answer, stop, error, started)

    def _finish(
        self, answer: str | None, stop: StopReason, error: str | None, started: float
    ) -> RLMChatCompletion:
        duration = time.perf_counter() - started
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
                return final, StopReason.FINAL
        return None, StopReason.MAX_ITERATIONS

    def _apply(self, verdict: Verdict, record: IterationRecord, feedback: list[str]) -> None:
        record.notes.append(verdict.note)
        if verdict.message:
            feedback.append(verdict.message)

    async def _act(self, verdict: Verdict, record: IterationRecord, feedback: list[str]) -> None:
        """Apply a verdict, and run the search it carries (its output follows the verdict's message)."""
        self._apply(verdict, record, feedback)
        if verdict.search is not None:
            block = await self._execute(verdict.search.code)
            record.code_blocks.append(block)
            feedback.append(f"```output\n{self._block_output(block).rstrip() or '(no output)'}\n```")

    async def _iteration(self, number: int) -> str | None:
        span = new_span_id()
        self._iteration_span = span
        self.emit(EventKind.ITERATION_START, IterationStarted(number), span, self.span_id)
        started = time.perf_counter()
        mark = self.ledger.mark()
        # Only what is new since the last iteration; the system prompt is already in the run metadata.
        new_from = len(self.messages) - 1 if number > 1 else 1
        # Ask the policy once per turn: the client it picks decides the window and the output cap.
        route = self.broker.route(self._root_request(self.messages))
        window = getattr(self.broker.clients.clients[route[0]], "context_window", None)
        if self.compactor.needed(self.messages, window):
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
            final = await self._turn(number, record, new_from, route)
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
        block = self._cell_in_flight
        if block is not None:
            block.error = "interrupted: the run was cancelled while this cell ran"
            for call in self._subcalls_in_flight.values():
                call.error = "interrupted: the run was cancelled while this call was in flight"
                call.duration = time.time() - call.started_at
                block.subcalls.append(call)
            record.code_blocks.append(block)
        record.notes.append("interrupted: the run was cancelled during this iteration")

    async def _turn(
        self, number: int, record: IterationRecord, new_from: int, route: list[str]
    ) -> str | None:
        if number == 1:
            await self._first_search(record)
        record.new_messages = list(self.messages[new_from:])
        response = await self._ask_root(self.messages, "root", route)
        reply = parse_reply(response.text)
        record.response = response.text
        if reply.prose:  # set before the code runs: an interrupted run returns it as its partial answer
            self._partial = reply.prose
        feedback: list[str] = []
        final: str | None = None
        for index, code in enumerate(reply.code_blocks):
            quoted = self.guards.quoted_answer(code)
            if quoted is not None:
                self._apply(quoted, record, feedback)
                final = quoted.accept
                break
            verdict = self.guards.stuck_on(code)
            if verdict is not None:
                await self._act(verdict, record, feedback)
                if verdict.finish:
                    final = await self._extract_final(prompts.STUCK_FINAL_NOTE)
                break
            block = await self._execute(code)
            record.code_blocks.append(block)
            feedback.append(
                prompts.execution_feedback(code, self._block_output(block), index, len(reply.code_blocks))
            )
            if block.final_answer is not None:
                final = block.final_answer
                break
            unquoted = self.guards.unquoted_final(block)
            if unquoted is not None:
                self._apply(unquoted, record, feedback)
                final = unquoted.accept
                break
        if final is None and (reply.final_text is not None or reply.final_var is not None):
            final = await self._final_from_text(reply.final_text, reply.final_var, feedback)
        if final is not None:
            verdict = self.guards.check_final(final, bool(reply.code_blocks), record.code_blocks)
            if verdict is not None:
                await self._act(verdict, record, feedback)
                final = None
        if reply.code_blocks:
            self.guards.ran_code = True
        record.notes.extend(self.guards.subcall_notes(record.code_blocks))
        if final is None and not reply.code_blocks and reply.final_text is None and reply.final_var is None:
            verdict = self.guards.no_code_reply(reply.prose)
            self._apply(verdict, record, feedback)
            final = verdict.accept
        if final is None:
            for verdict in self.guards.after_blocks(record.code_blocks, self._sub_window_chars):
                self._apply(verdict, record, feedback)
        self.messages.append(Message("assistant", response.text))
        if final is None:
            feedback.append(self.guards.turn_prompt())
            self.messages.append(Message("user", "\n\n".join(feedback)))
        record.final_answer = final
        return final

    def _block_output(self, block: CodeBlockRecord) -> str:
        parts = [block.stdout]
        if block.stderr:
            parts.append(block.stderr)
        if block.error:
            parts.append(block.error)
        limit = self.guards.output_limit(self.settings.max_output_chars)
        return _truncate("\n".join(p.rstrip("\n") for p in parts if p), limit)

    async def _execute(self, code: str) -> CodeBlockRecord:
        span = new_span_id()
        parent = self._iteration_span or self.span_id
        self.emit(EventKind.CODE_START, CodeStarted(code), span, parent)
        subcalls: list[SubCallRecord] = []
        self.cell_span_id, self.cell_subcalls = span, subcalls
        started_at, started = time.time(), time.perf_counter()
        self._cell_in_flight = CodeBlockRecord(
            code=code, subcalls=subcalls, span_id=span, started_at=started_at
        )
        try:
            result = await self.environment.execute(code, timeout=self.settings.cell_timeout)
        finally:
            self.cell_span_id, self.cell_subcalls = None, None
        wall = time.perf_counter() - started  # includes the sub-calls and child runs the cell waited for
        self._cell_in_flight = None  # kept when execute() raised: an interruption logs it
        self.all_subcalls.extend(subcalls)
        self.emit(EventKind.CODE_END, CodeEnded(code, result, wall), span, parent)
        block = self._block_record(code, result, subcalls)
        block.span_id, block.started_at, block.duration = span, started_at, wall
        return block

    def _block_record(self, code: str, result: ExecResult, subcalls: list[SubCallRecord]) -> CodeBlockRecord:
        stderr = result.stderr
        if result.state_lost:
            stderr += (
                "\n[the REPL was restarted: variables from earlier blocks are gone; context is reloaded]"
            )
        if result.restored:
            names = ", ".join(result.restored)
            stderr += (
                f"\n[{names} cannot be reassigned here and was restored; store results in new variables]"
            )
        return CodeBlockRecord(
            code=code,
            stdout=result.stdout,
            stderr=stderr.strip("\n"),
            error=result.error,
            final_answer=result.final_answer,
            duration=result.duration,
            timed_out=result.timed_out,
            subcalls=subcalls,
        )

    async def _final_from_text(self, text: str | None, var: str | None, feedback: list[str]) -> str | None:
        if var is None:
            return text
        result = await self.environment.execute(f"FINAL_VAR({var!r})")
        if result.final_answer is not None:
            return result.final_answer
        feedback.append(f"FINAL_VAR({var}) failed: {result.error or 'no such variable'}")
        return None

    async def _first_search(self, record: IterationRecord) -> None:
        """Small models: search the context for the query's key words as the model's first turn.

        Left alone, a small model prints the start of the context and then chases whatever name it
        saw there. The search is shown as the model's own turn, in the shape of the prompt's example,
        because small models continue a conversation they recognise far better than they follow
        instructions about one.
        """
        code = self.guards.first_search_code() if self.guards.small else None
        if code is None or len(self.messages) != 2:
            return
        block = await self._execute(code)
        record.code_blocks.append(block)
        record.notes.append("searched the context for the query's key words before the first turn")
        self.guards.ran_code = True
        self.messages.append(Message("assistant", f"```repl\n{code.rstrip()}\n```"))
        self.messages.append(
            Message(
                "user",
                prompts.execution_feedback(code, self._block_output(block), 0, 1)
                + "\n\n"
                + self.guards.turn_prompt(first=True),
            )
        )

    def _sub_window_chars(self) -> int | None:
        """The window of the sub-model this run's ``llm_query`` goes to, in characters of typical
        text (asked only when needed, so a stateful routing policy is not consulted for nothing)."""
        request = LMRequest(messages=[], depth=self.depth + 1, run_id=self.run_id)
        window = getattr(self.broker.client_for(request), "context_window", None)
        return int(window * TYPICAL_BYTES_PER_TOKEN) if isinstance(window, int) and window > 0 else None

    async def _ask_root(self, messages: list[Message], purpose: str, route: list[str] | None = None) -> Any:
        """A root call; small models get a short output cap, since one code block or FINAL is all a
        turn needs and local generation is slow. The cap is that of the client the routing policy
        picked for this call."""
        request = self._root_request(messages, purpose)
        route = route or self.broker.route(request)
        client = self.broker.clients.clients[route[0]]
        request.max_tokens = self.guards.root_max_tokens(getattr(client, "max_tokens", None))
        return await self.broker.complete(request, route)

    async def _extract_final(self, why: str = prompts.OUT_OF_TURNS_NOTE) -> str | None:
        """One last root call asking for the answer from what was found: out of iterations, or
        (``why``) a small model stuck on one block."""
        try:
            question = self.guards.extract_suffix()
            ask = [
                *self.messages,
                Message(
                    "user",
                    f"{why} Based only on what your code has shown, reply now with your best "
                    f"final answer as FINAL(answer). Do not write code.{question}",
                ),
            ]
            response = await self._ask_root(ask, "extract")
        except (BudgetExceededError, ProviderError):
            return None
        reply = parse_reply(response.text)
        if reply.final_text is not None or reply.final_var is not None:
            return await self._final_from_text(reply.final_text, reply.final_var, [])
        for code in reply.code_blocks:  # told not to, a small model may still quote its evidence
            quoted = self.guards.quoted_answer(code)
            if quoted is not None:
                return quoted.accept
        return reply.prose or None
