"""Calls from REPL code back into the engine: ``llm_query``, ``rlm_query``, their batched forms,
custom tools, and child RLMs. Each becomes a sub-call span under the code cell that made it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from rlm_core.engine import choice_scores, typed_answers
from rlm_core.engine.broker import Broker
from rlm_core.engine.cells import CellScope
from rlm_core.engine.emitter import new_span_id
from rlm_core.engine.typed_answers import AnswerSpec, TypedAnswerError
from rlm_core.errors import RLMError
from rlm_core.events import BatchEnded, BatchStarted, EventKind, SubcallEnded, SubcallStarted
from rlm_core.records import SubCallRecord
from rlm_core.types import LMRequest, LMResponse, Message, TokenUsage


class RunContext(Protocol):
    """What host calls need of the run they serve (``rlm_core.engine.run.Run`` provides it)."""

    broker: Broker
    settings: Any
    depth: int
    run_id: str
    span_id: str
    cell: CellScope | None  # the code cell running now, if any

    @property
    def sub_max_tokens(self) -> int | None:
        """The output cap of the run's sub-calls (a strategy's ``CapCall``), or None."""
        ...

    def emit(self, kind: EventKind, payload: Any, span_id: str, parent_span_id: str | None) -> None: ...


# Starts a child RLM on ``prompt`` under the sub-call span ``span_id``; fills in ``record``.
ChildStarter = Callable[[Any, SubCallRecord], Awaitable[str]]


def prompt_messages(prompt: Any) -> list[Message]:
    """llm_query accepts a string or a chat-style list of {"role", "content"} dicts."""
    if isinstance(prompt, str):
        return [Message("user", prompt)]
    if isinstance(prompt, list) and all(isinstance(m, dict) and "content" in m for m in prompt):
        return [Message(str(m.get("role", "user")), str(m["content"])) for m in prompt]
    return [Message("user", str(prompt))]


class HostCalls:
    """The host side of one run's REPL: the environment calls ``await host_calls(function, args)``."""

    def __init__(self, run: RunContext, start_child: ChildStarter) -> None:
        self.run = run
        self.start_child = start_child

    async def __call__(self, function: str, args: dict[str, Any]) -> Any:
        spec = typed_answers.answer_spec(args.get("choices"), args.get("schema"))
        scored = bool(args.get("scores"))
        if scored:
            choice_scores.check_scorable(spec)
        if function in ("llm_query", "rlm_query"):
            return await self.subcall(
                function,
                args.get("prompt", ""),
                args.get("model"),
                self._cell_span(),
                spec=spec,
                scored=scored,
            )
        if function in ("llm_query_batched", "rlm_query_batched"):
            prompts = list(args.get("prompts") or [])
            return await self.batch(function, prompts, args.get("model"), spec, scored=scored)
        tool = self.run.settings.custom_tools.get(function)
        if tool is None or not callable(tool):
            raise RLMError(f"unknown host function {function!r}")
        result = tool(*args.get("args", []), **args.get("kwargs", {}))
        if asyncio.iscoroutine(result):
            result = await result
        return result

    def _cell_span(self) -> str | None:
        cell = self.run.cell
        return cell.span_id if cell is not None else self.run.span_id

    async def batch(
        self,
        function: str,
        prompts: list[Any],
        model: str | None,
        spec: AnswerSpec | None = None,
        *,
        scored: bool = False,
    ) -> list[Any]:
        """Concurrent sub-calls, results in order; a failed slot becomes an ``"Error: ..."`` string."""
        single = function.replace("_batched", "")
        batch_span = new_span_id()
        parent = self._cell_span()
        started = time.perf_counter()
        self.run.emit(
            EventKind.BATCH_START, BatchStarted(function, len(prompts), model or ""), batch_span, parent
        )
        results = await asyncio.gather(
            *(
                self.subcall(single, prompt, model, batch_span, batch_index=index, spec=spec, scored=scored)
                for index, prompt in enumerate(prompts)
            ),
            return_exceptions=True,
        )
        texts = [f"Error: {type(r).__name__}: {r}" if isinstance(r, BaseException) else r for r in results]
        failed = sum(1 for r in results if isinstance(r, BaseException))
        self.run.emit(
            EventKind.BATCH_END,
            BatchEnded(function, len(prompts), failed, time.perf_counter() - started),
            batch_span,
            parent,
        )
        for result in results:  # cancellation is not a slot's failure: it ends the cell
            if isinstance(result, asyncio.CancelledError):
                raise result
        return texts

    async def subcall(
        self,
        function: str,
        prompt: Any,
        model: str | None,
        parent_span_id: str | None,
        batch_index: int | None = None,
        spec: AnswerSpec | None = None,
        scored: bool = False,
    ) -> Any:
        run = self.run
        record = SubCallRecord(
            call_id=uuid.uuid4().hex[:12],
            function=function,
            depth=run.depth + 1,
            model=model or "",
            prompt=prompt if isinstance(prompt, str) else repr(prompt),
            span_id=new_span_id(),
            parent_span_id=parent_span_id,
            batch_id=parent_span_id if batch_index is not None else None,
            batch_index=batch_index,
            started_at=time.time(),
        )
        cell = run.cell  # the cell that made the call, even if it has ended when the call does
        if cell is not None:
            cell.call_started(record)
        run.emit(
            EventKind.SUBCALL_START,
            SubcallStarted(record.call_id, function, record.model, batch_index),
            record.span_id,
            parent_span_id,
        )
        started = time.perf_counter()
        try:
            if function == "rlm_query" and run.depth + 1 < run.settings.max_depth and spec is None:
                answer: Any = await self.start_child(prompt, record)
            elif spec is not None and scored:
                answer = await self._scored_call(function, prompt, model, record, spec)
            elif spec is not None:
                answer = await self._typed_call(function, prompt, model, record, spec)
            else:
                answer = await self._plain_call(function, prompt_messages(prompt), model, record)
            record.response = typed_answers.as_text(answer)
            return answer
        except BaseException as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            record.duration = time.perf_counter() - started
            if cell is not None:
                cell.call_ended(record)
            run.emit(
                EventKind.SUBCALL_END,
                SubcallEnded(record.call_id, function, record, record.duration),
                record.span_id,
                parent_span_id,
            )

    async def _typed_call(
        self, function: str, prompt: Any, model: str | None, record: SubCallRecord, spec: AnswerSpec
    ) -> Any:
        """A sub-call whose answer must match ``spec``: the provider's structured output where the
        client has one, then validation, and one retry that names what was wrong. Each attempt goes
        through the broker, so usage, limits and budgets count the retry."""
        messages = prompt_messages(prompt)
        messages[-1] = Message(messages[-1].role, f"{messages[-1].content}\n\n{spec.instruction()}")
        text = await self._plain_call(function, messages, model, record, spec.wire)
        value, problem = typed_answers.read_answer(text, spec)
        if problem is None:
            return value
        retry = [
            *messages,
            Message("assistant", text),
            Message("user", typed_answers.retry_message(problem, spec)),
        ]
        text = await self._plain_call(function, retry, model, record, spec.wire)
        value, problem = typed_answers.read_answer(text, spec)
        if problem is None:
            return value
        raise TypedAnswerError(
            f"the sub-model's answer did not match the requested shape after one retry: {problem}. "
            "Make the prompt shorter and about one item, or loosen the choices or schema."
        )

    async def _scored_call(
        self, function: str, prompt: Any, model: str | None, record: SubCallRecord, spec: AnswerSpec
    ) -> dict[str, float | None]:
        """One call capped at a single output token that asks for its alternatives; the answer is
        each choice's log-probability (see engine/choice_scores.py). A client that cannot give
        them is not called."""
        choices = choice_scores.check_scorable(spec)
        messages = prompt_messages(prompt)
        messages[-1] = Message(messages[-1].role, f"{messages[-1].content}\n\n{spec.instruction()}")
        request = self._request(function, messages, model, record, top_logprobs=choice_scores.ALTERNATIVES)
        plan = self.run.broker.plan(request)
        if not getattr(plan.first, "token_logprobs", False):
            raise choice_scores.no_scores_error(getattr(plan.first, "model_name", "") or "the sub-model")
        response = await self._charged(record, self.run.broker.complete(request, plan))
        return choice_scores.scores_or_error(response.top_logprobs, choices)

    async def _plain_call(
        self,
        function: str,
        messages: list[Message],
        model: str | None,
        record: SubCallRecord,
        schema: dict[str, Any] | None = None,
    ) -> str:
        request = self._request(function, messages, model, record, schema)
        return (await self._charged(record, self.run.broker.complete(request))).text

    def _request(
        self,
        function: str,
        messages: list[Message],
        model: str | None,
        record: SubCallRecord,
        schema: dict[str, Any] | None = None,
        *,
        top_logprobs: int | None = None,
    ) -> LMRequest:
        run = self.run
        return LMRequest(
            messages=messages,
            depth=run.depth + 1,
            model=model,
            purpose=function,
            run_id=run.run_id,
            parent_span_id=record.span_id,
            # A scored call needs one token (its alternatives are the answer), whatever the cap.
            max_tokens=1 if top_logprobs else run.sub_max_tokens,
            response_schema=schema,
            top_logprobs=top_logprobs,
        )

    @staticmethod
    async def _charged(record: SubCallRecord, call: Awaitable[LMResponse]) -> LMResponse:
        response = await call
        record.model = response.model or record.model
        # A retried typed call reports both attempts: the record matches what the ledger charged.
        record.usage = record.usage + (response.usage or TokenUsage())
        record.cost = response.cost if record.cost is None else record.cost + (response.cost or 0.0)
        return response
