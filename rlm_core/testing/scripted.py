"""ScriptedClient: an in-process LM client that answers from a script, for engine and plugin tests.

Usage is counted with ``rlm_core.testing.tokens``, like the loopback servers, so budgets behave the
same whether a test goes through HTTP or not.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from rlm_core.clients.base import BaseClient, Price
from rlm_core.errors import ConfigurationError, ProviderError
from rlm_core.testing.tokens import count_message_tokens, count_tokens, truncate_to_tokens
from rlm_core.types import LMRequest, LMResponse, TokenUsage

__all__ = ["FailOn", "ReplyScript", "ScriptedClient", "repl"]


def repl(code: str) -> str:
    """A model reply holding one ```repl code block, as a root model writes it."""
    return f"```repl\n{code}\n```"


ReplyScript = Sequence[str] | Callable[[LMRequest], "str | LMResponse"] | None
FailOn = (
    Mapping[int, "BaseException | type[BaseException]"]
    | Callable[[int, LMRequest], "BaseException | type[BaseException] | None"]
    | None
)


class ScriptedClient(BaseClient):
    """Replies from ``replies``: a list consumed in order, one per successful call, or a callable
    ``reply(request) -> str`` (it may also return a complete ``LMResponse``, used as is).

    When a list runs out the last reply repeats; pass ``strict=True`` to raise ``ProviderError``
    instead (catches scripts that run longer than the test meant). ``fail_on`` makes calls fail:
    ``{call_index: exception}`` (0-based over all calls, failed ones included; an exception class
    is instantiated with a message) or ``fail_on(call_index, request) -> exception | None``. A failed
    call consumes no reply. ``latency`` seconds are slept per call (``asyncio.sleep`` in
    ``acomplete``, so concurrent calls really overlap). Replies are cut to ``request.max_tokens``
    like the loopback servers cut them (finish reason ``length``). Every request is recorded in
    ``requests``; all of this is thread-safe.
    """

    backend = "scripted"

    def __init__(
        self,
        replies: ReplyScript = None,
        *,
        model_name: str = "scripted",
        latency: float = 0.0,
        fail_on: FailOn = None,
        context_window: int | None = None,
        price: Price | None = None,
        strict: bool = False,
    ) -> None:
        if isinstance(replies, str):
            raise ConfigurationError(
                "ScriptedClient(replies=...) takes a list of strings or a callable, got one string; "
                "wrap it: replies=[reply]."
            )
        self.model_name = model_name
        self.latency = latency
        self.fail_on = fail_on
        self.context_window = context_window
        self.price = price
        self.strict = strict
        self._lock = threading.Lock()
        self._reply_fn: Callable[[LMRequest], str | LMResponse] | None = None
        self._replies: list[str] = []
        self._reply_index = 0
        self._calls = 0
        self._requests: list[LMRequest] = []
        self.closed = False
        self.set_replies(replies)

    def __repr__(self) -> str:
        return f"ScriptedClient(model_name={self.model_name!r}, calls={self._calls})"

    def set_replies(self, replies: ReplyScript) -> None:
        """Replace the script and rewind it (recorded requests stay)."""
        with self._lock:
            if callable(replies):
                self._reply_fn, self._replies = replies, []
            else:
                self._reply_fn, self._replies = None, list(replies or [])
            self._reply_index = 0

    @property
    def requests(self) -> list[LMRequest]:
        """Every request received, failed ones included, in call order."""
        with self._lock:
            return list(self._requests)

    @property
    def calls(self) -> int:
        with self._lock:
            return self._calls

    @property
    def prompts(self) -> list[str]:
        """The last message's content of each request: what the caller asked, in order."""
        return [r.messages[-1].content if r.messages else "" for r in self.requests]

    def complete(self, request: LMRequest) -> LMResponse:
        index = self._record(request)
        started = time.perf_counter()
        if self.latency > 0:
            time.sleep(self.latency)
        return self._respond(index, request, started)

    async def acomplete(self, request: LMRequest) -> LMResponse:
        index = self._record(request)
        started = time.perf_counter()
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        return self._respond(index, request, started)

    def close(self) -> None:
        self.closed = True

    def _record(self, request: LMRequest) -> int:
        with self._lock:
            self._requests.append(request)
            index = self._calls
            self._calls += 1
            return index

    def _failure(self, index: int, request: LMRequest) -> BaseException | None:
        if self.fail_on is None:
            return None
        fail_on = self.fail_on
        failure = fail_on(index, request) if callable(fail_on) else fail_on.get(index)
        if isinstance(failure, type):
            failure = failure(f"ScriptedClient: scripted failure of call {index}")
        return failure

    def _next_reply(self, request: LMRequest) -> str | LMResponse:
        if self._reply_fn is not None:
            return self._reply_fn(request)
        with self._lock:
            if not self._replies:
                return ""
            if self._reply_index < len(self._replies):
                reply = self._replies[self._reply_index]
                self._reply_index += 1
                return reply
            if not self.strict:
                return self._replies[-1]
        raise ProviderError(
            f"ScriptedClient {self.model_name!r}: all {len(self._replies)} scripted replies were used and "
            f"call {self._calls} wants another; script more replies or drop strict=True.",
            client=self.backend,
            model=self.model_name,
        )

    def _respond(self, index: int, request: LMRequest, started: float) -> LMResponse:
        failure = self._failure(index, request)
        if failure is not None:
            raise failure
        reply = self._next_reply(request)
        if isinstance(reply, LMResponse):
            return reply
        text, truncated = truncate_to_tokens(str(reply), request.max_tokens)
        usage = TokenUsage(count_message_tokens(request.messages), count_tokens(text))
        return LMResponse(
            text=text,
            usage=usage,
            model=self.model_name,
            finish_reason="length" if truncated else "stop",
            cost=self.price.cost(usage) if self.price is not None else None,
            latency=time.perf_counter() - started,
        )
