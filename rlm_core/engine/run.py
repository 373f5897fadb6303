"""One run of the root loop: ask the root model, run its code, feed the output back, until it answers.

A child RLM (``rlm_query``) is another Run at a greater depth that shares the parent's broker (so
budgets, the sub-call limit and usage totals are shared) but has its own environment.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from rlm_core.engine.broker import Broker
from rlm_core.engine.emitter import Emitter
from rlm_core.engine.tokens import message_bytes
from rlm_core.environments.base import Environment, ExecResult
from rlm_core.errors import BudgetExceededError, ProviderError, RLMError
from rlm_core.events import EventKind
from rlm_core.guidance import prompts
from rlm_core.guidance.guards import ReplyGuards
from rlm_core.guidance.parsing import parse_reply
from rlm_core.records import CodeBlockRecord, IterationRecord, RunMetadata, SubCallRecord
from rlm_core.types import (
    LMRequest,
    Message,
    ModelUsage,
    RLMChatCompletion,
    StopReason,
    TokenUsage,
    UsageSummary,
)

logger = logging.getLogger("rlm_core.engine.run")

KEEP_TAIL = 4  # messages kept verbatim when the root conversation is compacted


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


EnvironmentFactory = Callable[[], Awaitable[Environment]]


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    return f"{text[:head]}\n[... {len(text) - limit:,} characters omitted ...]\n{text[-tail:]}"


def _prompt_messages(prompt: Any) -> list[Message]:
    """llm_query accepts a string or a chat-style list of {"role", "content"} dicts."""
    if isinstance(prompt, str):
        return [Message("user", prompt)]
    if isinstance(prompt, list) and all(isinstance(m, dict) and "content" in m for m in prompt):
        return [Message(str(m.get("role", "user")), str(m["content"])) for m in prompt]
    return [Message("user", str(prompt))]


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
        self.turn = turn
        self.run_id = uuid.uuid4().hex
        self.deadline = deadline
        self.usage = UsageSummary()
        self.messages: list[Message] = []
        self.iterations = 0
        self._subcalls: list[SubCallRecord] | None = None
        self._partial = ""
        self._compactions = 0
        self.all_subcalls: list[SubCallRecord] = []
        self._transcript: list[dict[str, str]] = []
        root_name = broker.clients.for_depth(depth)
        self.root_client = broker.clients.clients[root_name]
        self.root_model: str = getattr(self.root_client, "model_name", root_name)
        self.guards = ReplyGuards(
            enabled=settings.small_model_guards,
            small=self._style() == "small",
            root_prompt=root_prompt,
            context=context,
        )

    # -- helpers -------------------------------------------------------------------------------

    def _emit(self, kind: EventKind, **data: Any) -> None:
        self.emitter.emit(kind, self.run_id, self.depth, self.parent_run_id, **data)

    async def _ask(
        self,
        messages: list[Message],
        purpose: str,
        depth: int,
        model: str | None = None,
        max_tokens: int | None = None,
    ) -> Any:
        request = LMRequest(
            messages=list(messages),
            depth=depth,
            model=model,
            purpose=purpose,
            run_id=self.run_id,
            max_tokens=max_tokens,
        )
        response = await self.broker.complete(request, self.parent_run_id)
        self.usage.record(request.tier, response.model or "", response.usage, response.cost)
        return response

    def _style(self) -> str:
        if self.settings.prompt_style != "auto":
            return self.settings.prompt_style
        if getattr(self.root_client, "prefers_small_prompt", False):
            return "small"
        return "small" if prompts.looks_like_small_model(self.root_model) else "default"

    def _metadata(self, system: str) -> RunMetadata:
        from rlm_core import __version__

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
        )

    # -- host calls from REPL code -------------------------------------------------------------

    async def host_call(self, function: str, args: dict[str, Any]) -> Any:
        if function == "llm_query":
            return await self._subcall("llm_query", args.get("prompt", ""), args.get("model"))
        if function == "rlm_query":
            return await self._subcall("rlm_query", args.get("prompt", ""), args.get("model"))
        if function in ("llm_query_batched", "rlm_query_batched"):
            single = function.replace("_batched", "")
            prompts_ = list(args.get("prompts") or [])
            results = await asyncio.gather(
                *(self._subcall(single, p, args.get("model")) for p in prompts_), return_exceptions=True
            )
            return [r if isinstance(r, str) else f"Error: {type(r).__name__}: {r}" for r in results]
        tool = self.settings.custom_tools.get(function)
        if tool is None or not callable(tool):
            raise RLMError(f"unknown host function {function!r}")
        result = tool(*args.get("args", []), **args.get("kwargs", {}))
        if asyncio.iscoroutine(result):
            result = await result
        return result

    async def _subcall(self, function: str, prompt: Any, model: str | None) -> str:
        record = SubCallRecord(call_id=uuid.uuid4().hex[:12], function=function, depth=self.depth + 1)
        record.model = model or ""
        record.prompt = prompt if isinstance(prompt, str) else repr(prompt)
        self._emit(EventKind.SUBCALL_START, call_id=record.call_id, function=function, model=record.model)
        started = time.perf_counter()
        sink = self._subcalls
        try:
            if function == "rlm_query" and self.depth + 1 < self.settings.max_depth:
                text = await self._child_run(prompt, model, record)
            else:
                response = await self._ask(_prompt_messages(prompt), function, self.depth + 1, model)
                record.model = response.model or record.model
                record.usage = response.usage
                text = response.text
            record.response = text
            return text
        except BaseException as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            record.duration = time.perf_counter() - started
            if sink is not None:
                sink.append(record)
            self._emit(EventKind.SUBCALL_END, call_id=record.call_id, function=function, record=record)

    async def _child_run(self, prompt: Any, model: str | None, record: SubCallRecord) -> str:
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
            deadline=self.deadline,
        )
        try:
            await environment.start(child.host_call, self.settings.custom_tools)
            await environment.load_context(0, prompt)
            result = await child.run()
        finally:
            await environment.close()
        self.usage.merge(child.usage)
        record.child_run_id = child.run_id
        record.child_iterations = result.iterations
        record.model = child.root_model
        total = child.usage.total
        record.usage = TokenUsage(total.input_tokens, total.output_tokens)
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
        self._emit(EventKind.RUN_START, metadata=self._metadata(system))
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
            # A child run's "root" calls spend the sub tier: for it, that is its own root budget.
            stop, error = StopReason.ROOT_BUDGET, str(exc)
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
        result = RLMChatCompletion(
            root_model=self.root_model,
            prompt=self.context,
            response=answer if answer is not None else self._partial,
            usage_summary=self.usage,
            execution_time=time.perf_counter() - started,
            stop_reason=stop,
            error=error,
            iterations=self.iterations,
            run_id=self.run_id,
        )
        self._emit(EventKind.RUN_END, result=result)
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

    async def _iteration(self, number: int) -> str | None:
        self._emit(EventKind.ITERATION_START, iteration=number)
        started = time.perf_counter()
        own_tier = "root" if self.depth == 0 else "sub"
        before_root = self.usage.tier_total(own_tier)
        before_sub = self.usage.tier_total("sub")
        # Only what is new since the last iteration; the system prompt is already in the run metadata.
        new_from = len(self.messages) - 1 if number > 1 else 1
        await self._maybe_compact()
        record = IterationRecord(
            run_id=self.run_id, iteration=number, depth=self.depth, timestamp=time.time()
        )
        if number == 1:
            await self._first_search(record)
        record.new_messages = list(self.messages[new_from:])
        response = await self._ask_root(self.messages, "root")
        reply = parse_reply(response.text)
        record.response = response.text
        feedback: list[str] = []
        final: str | None = None
        for index, code in enumerate(reply.code_blocks):
            if self.guards.stuck_on(code, record, feedback):
                break
            block = await self._execute(code)
            record.code_blocks.append(block)
            feedback.append(
                prompts.execution_feedback(code, self._block_output(block), index, len(reply.code_blocks))
            )
            if block.final_answer is not None:
                final = block.final_answer
                break
        if final is None and (reply.final_text is not None or reply.final_var is not None):
            final = await self._final_from_text(reply.final_text, reply.final_var, feedback)
        if final is not None:
            final = self.guards.check_final(final, bool(reply.code_blocks), record, feedback)
        if reply.code_blocks:
            self.guards.ran_code = True
        if final is None and not reply.code_blocks and reply.final_text is None and reply.final_var is None:
            final = self.guards.no_code_reply(reply.prose, record, feedback)
        if final is None:
            sub_client = self.broker.clients.clients[self.broker.clients.for_depth(self.depth + 1)]
            self.guards.after_blocks(record, getattr(sub_client, "context_window", None), feedback)
        if reply.prose:
            self._partial = reply.prose
        self.messages.append(Message("assistant", response.text))
        if final is None:
            feedback.append(self.guards.turn_prompt())
            self.messages.append(Message("user", "\n\n".join(feedback)))
        record.final_answer = final
        record.root_usage = self._usage_delta(own_tier, before_root)
        record.sub_usage = self._usage_delta("sub", before_sub) if self.depth == 0 else TokenUsage()
        record.duration = time.perf_counter() - started
        self._emit(EventKind.ITERATION_END, record=record)
        return final

    def _usage_delta(self, tier: str, before: ModelUsage) -> TokenUsage:
        now = self.usage.tier_total(tier)
        return TokenUsage(now.input_tokens - before.input_tokens, now.output_tokens - before.output_tokens)

    def _block_output(self, block: CodeBlockRecord) -> str:
        parts = [block.stdout]
        if block.stderr:
            parts.append(block.stderr)
        if block.error:
            parts.append(block.error)
        limit = self.guards.output_limit(self.settings.max_output_chars)
        return _truncate("\n".join(p.rstrip("\n") for p in parts if p), limit)

    async def _execute(self, code: str) -> CodeBlockRecord:
        self._emit(EventKind.CODE_START, code=code)
        subcalls: list[SubCallRecord] = []
        self._subcalls = subcalls
        try:
            result = await self.environment.execute(code, timeout=self.settings.cell_timeout)
        finally:
            self._subcalls = None
        self.all_subcalls.extend(subcalls)
        self._emit(EventKind.CODE_END, code=code, result=result)
        return self._block_record(code, result, subcalls)

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

    async def _ask_root(self, messages: list[Message], purpose: str) -> Any:
        """A root call; small models get a short output cap, since one code block or FINAL is all a
        turn needs and local generation is slow."""
        cap = self.guards.root_max_tokens(getattr(self.root_client, "max_tokens", None))
        return await self._ask(messages, purpose, self.depth, max_tokens=cap)

    async def _maybe_compact(self) -> None:
        """Keep the root conversation inside the model's window; the full transcript stays in the REPL."""
        window = getattr(self.root_client, "context_window", None)
        if not window or len(self.messages) < 6:
            return
        if message_bytes(self.messages) / 3.5 < window * self.settings.compaction_threshold:
            return
        self._compactions += 1
        self._transcript.extend({"role": m.role, "content": m.content} for m in self.messages[2:-KEEP_TAIL])
        # The current turn's transcript lives where later turns will find it too: history_<turn>.
        await self.environment.load_history(self.turn, self._transcript)
        summary = Message(
            "user",
            f"[{len(self._transcript)} earlier messages were removed to fit the model's window. They are "
            f"in the REPL variable `history_{self.turn}` (a list of {{role, content}} dicts); your "
            "variables are all still there. Continue from the messages below.]",
        )
        self.messages = [*self.messages[:2], summary, *self.messages[-KEEP_TAIL:]]

    async def _extract_final(self) -> str | None:
        """Out of iterations: one last root call asking for the answer from what was found."""
        try:
            question = self.guards.extract_suffix()
            ask = [
                *self.messages,
                Message(
                    "user",
                    "You have run out of turns. Based only on what your code has shown, reply now with your "
                    f"best final answer as FINAL(answer). Do not write code.{question}",
                ),
            ]
            response = await self._ask_root(ask, "extract")
        except (BudgetExceededError, ProviderError):
            return None
        reply = parse_reply(response.text)
        if reply.final_text is not None or reply.final_var is not None:
            return await self._final_from_text(reply.final_text, reply.final_var, [])
        return reply.prose or None
