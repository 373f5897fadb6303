"""The broker: every model call, root or sub, goes through here.

Route (the policy picks the client) → limits (tokens of the tier, USD, call count: reserve, or wait
for in-flight calls) → call the client (sub-calls under one concurrency limit) → one ``CallOutcome``
into the ledger → events. Nothing else counts usage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import attrs

from rlm_core.engine.budget import DEFAULT_OUTPUT_RESERVE, Reservation, RunBudget
from rlm_core.engine.emitter import Emitter, new_span_id
from rlm_core.engine.ledger import CallOutcome, Ledger
from rlm_core.engine.tokens import MAX_BYTES_PER_TOKEN, TokenEstimator, estimate_output_tokens, message_bytes
from rlm_core.errors import ConfigurationError, ProviderError, RLMError
from rlm_core.events import EventKind, ModelCallEnded, ModelCallStarted
from rlm_core.routing import ClientSet, RoutingPolicy
from rlm_core.types import LMRequest, LMResponse, TokenUsage
from rlm_core.unicode_safety import without_lone_surrogates


@attrs.define(frozen=True)
class RoutePlan:
    """The routing policy's decision for one request: the client names to try, in order, and the
    first of them, whose window and output cap are the ones the caller sizes the request for."""

    names: tuple[str, ...]
    first: Any

    @property
    def context_window(self) -> int | None:
        window = getattr(self.first, "context_window", None)
        return window if isinstance(window, int) and window > 0 else None

    @property
    def max_tokens(self) -> int | None:
        cap = getattr(self.first, "max_tokens", None)
        return cap if isinstance(cap, int) and cap > 0 else None


class Broker:
    """Shared by a run and its child runs (they share clients, limits, the sub-call limit and the ledger)."""

    def __init__(
        self,
        clients: ClientSet,
        policy: RoutingPolicy,
        budget: RunBudget,
        emitter: Emitter,
        max_concurrent_subcalls: int,
        estimators: dict[str, TokenEstimator] | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        # A per-completion view of the clients, so a policy can read this completion's budgets.
        self.clients = attrs.evolve(clients, budget=budget)
        self.policy = policy
        self.budget = budget
        self.emitter = emitter
        self.ledger = ledger if ledger is not None else Ledger()
        self.estimators = estimators if estimators is not None else {}
        self._sub_slots = asyncio.Semaphore(max_concurrent_subcalls)

    def plan(self, request: LMRequest) -> RoutePlan:
        """What the routing policy picked for ``request``: the clients to try, in order."""
        selected = self.policy.select(request, self.clients)
        names: Sequence[str] = [selected] if isinstance(selected, str) else selected
        if not names:
            raise RLMError(f"routing policy {self.policy!r} selected no client")
        for name in names:
            if name not in self.clients.clients:
                raise RLMError(
                    f"routing policy {self.policy!r} selected {name!r}, which is not configured "
                    f"(configured: {', '.join(self.clients.clients)})"
                )
        return RoutePlan(tuple(names), self.clients.clients[names[0]])

    async def complete(self, request: LMRequest, plan: RoutePlan | None = None) -> LMResponse:
        """Make the call; ``plan`` is a routing decision already taken for it (else the policy is asked)."""
        if request.depth == 0:
            return await self._complete(request, plan)
        async with self._sub_slots:
            return await self._complete(request, plan)

    async def _complete(self, request: LMRequest, plan: RoutePlan | None) -> LMResponse:
        last_error: ProviderError | None = None
        for name in (plan or self.plan(request)).names:
            try:
                return await self._call(name, request)
            except ProviderError as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    async def _reserve(
        self, name: str, client: Any, prompt_estimate: int, wanted: int, tier: Any
    ) -> tuple[Reservation, Reservation | None]:
        tokens = await tier.reserve(prompt_estimate, 1, wanted)
        if self.budget.cost is None:
            return tokens, None
        price = getattr(client, "price", None)
        if price is None:  # RLM() refuses this configuration; a policy-built client could still slip in
            tier.settle(tokens, None)
            raise ConfigurationError(
                f"max_cost is set but client {name!r} has no known price; pass "
                "backend_kwargs={'price': (input_usd_per_mtok, output_usd_per_mtok)}"
            )
        try:
            cost = await self.budget.cost.reserve(
                prompt_estimate * price.input_per_mtok / 1e6, price.output_per_mtok / 1e6, tokens.max_tokens
            )
        except BaseException:
            tier.settle(tokens, None)
            raise
        tier.shrink(tokens, cost.max_tokens)
        return tokens, cost

    async def _call(self, name: str, request: LMRequest) -> LMResponse:
        client = self.clients.clients[name]
        tier = self.budget.for_depth(request.depth)
        estimator = self.estimators.setdefault(name, TokenEstimator())
        size = message_bytes(request.messages)  # once per call: a root history can be large
        prompt_estimate = estimator.estimate(request.messages, size)
        self._check_window(name, client, size)
        wanted = _output_cap(request.max_tokens, getattr(client, "max_tokens", None))
        tokens, cost_hold = await self._reserve(name, client, prompt_estimate, wanted, tier)
        try:
            self.budget.calls.start()
        except BaseException:
            tier.settle(tokens, None)
            if cost_hold is not None and self.budget.cost is not None:
                self.budget.cost.settle(cost_hold, None)
            raise
        # A lone surrogate in a prompt cannot be sent as UTF-8: it becomes U+FFFD rather than an error.
        messages = [attrs.evolve(m, content=without_lone_surrogates(m.content)) for m in request.messages]
        capped = attrs.evolve(request, max_tokens=tokens.max_tokens, messages=messages)
        span_id = new_span_id()
        model = str(getattr(client, "model_name", name))
        self._emit(
            EventKind.LM_CALL_START,
            ModelCallStarted(span_id, name, model, request.tier, request.purpose, tokens.max_tokens),
            request,
            span_id,
        )
        started_at, started = time.time(), time.perf_counter()
        response: LMResponse | None = None
        failure: BaseException | None = None
        try:
            acomplete = getattr(client, "acomplete", None)
            if acomplete is not None:
                response = await acomplete(capped)
            else:
                response = await asyncio.to_thread(client.complete, capped)
        except BaseException as exc:
            failure = exc
        latency = time.perf_counter() - started
        outcome = self._outcome(name, client, model, request, response, failure, prompt_estimate)
        outcome = attrs.evolve(outcome, span_id=span_id, started_at=started_at, latency=latency)
        tier.settle(tokens, outcome.usage.total_tokens if response is not None else None)
        if cost_hold is not None and self.budget.cost is not None:
            self.budget.cost.settle(cost_hold, outcome.cost if response is not None else None)
        self.ledger.record(outcome)
        self._emit(
            EventKind.LM_CALL_END,
            ModelCallEnded(
                span_id,
                outcome.model,
                request.purpose,
                outcome,
                usage=outcome.usage if response is not None else None,
                error=outcome.error,
                duration=latency,
                cost=outcome.cost,
            ),
            request,
            span_id,
        )
        if failure is not None:
            if isinstance(failure, ProviderError) or not isinstance(failure, Exception):
                raise failure
            if isinstance(failure, RLMError):
                raise failure
            raise ProviderError(
                f"{name}: {type(failure).__name__}: {failure}", client=name, model=model
            ) from failure
        assert response is not None
        estimator.observe(capped.messages, response.usage.input_tokens, size)
        response.usage = outcome.usage
        response.cost = outcome.cost
        response.latency = response.latency or latency
        response.model = response.model or model
        return response

    @staticmethod
    def _check_window(name: str, client: Any, size: int) -> None:
        """Refuse, before sending, a prompt that cannot fit the model's window even at a generous
        bytes-per-token ratio: the provider would only refuse it after a round trip (and some bill
        it). A ProviderError, so a fallback policy tries a client with a larger window."""
        window = getattr(client, "context_window", None)
        if not isinstance(window, int) or window <= 0:
            return
        if size / MAX_BYTES_PER_TOKEN > window:
            raise ProviderError(
                f"{name}: the prompt ({size:,} bytes, at least {int(size / MAX_BYTES_PER_TOKEN):,} tokens) "
                f"exceeds the context window of {window:,} tokens; send smaller pieces (slice the text, "
                "or use llm_query_batched over chunks)",
                client=name,
                model=str(getattr(client, "model_name", name)),
            )

    def _outcome(
        self,
        name: str,
        client: Any,
        model: str,
        request: LMRequest,
        response: LMResponse | None,
        failure: BaseException | None,
        prompt_estimate: int,
    ) -> CallOutcome:
        common: dict[str, Any] = {
            "span_id": "",
            "run_id": request.run_id,
            "client": name,
            "tier": request.tier,
            "depth": request.depth,
            "purpose": request.purpose,
            "parent_span_id": request.parent_span_id,
        }
        if response is None:
            error = f"{type(failure).__name__}: {failure}" if failure is not None else "no response"
            return CallOutcome(model=model, error=error, **common)
        usage, estimated = response.usage, False
        if usage.total_tokens == 0 and not response.cached:
            # No usage from the provider: charge the engine's conservative estimate, so limits hold.
            usage, estimated = TokenUsage(prompt_estimate, estimate_output_tokens(response.text)), True
        cost = response.cost
        price = getattr(client, "price", None)
        if cost is None and price is not None:
            cost = price.cost(usage)
        return CallOutcome(
            model=response.model or model,
            usage=usage,
            cost=cost,
            usage_estimated=estimated,
            cached=response.cached,
            finish_reason=response.finish_reason,
            **common,
        )

    def _emit(self, kind: EventKind, payload: Any, request: LMRequest, span_id: str) -> None:
        if not self.emitter.active:
            return
        self.emitter.emit(
            kind,
            payload,
            run_id=request.run_id,
            depth=request.depth,
            span_id=span_id,
            parent_span_id=request.parent_span_id,
            parent_run_id=self.ledger.parent_of(request.run_id),
        )


def _output_cap(engine_cap: int | None, client_cap: Any) -> int:
    """The output cap of one call: the request's (a strategy's CapCall) can only lower the
    one the user gave the client, never raise it."""
    own = client_cap if isinstance(client_cap, int) and client_cap > 0 else None
    if engine_cap and own:
        return min(engine_cap, own)
    return engine_cap or own or DEFAULT_OUTPUT_RESERVE
