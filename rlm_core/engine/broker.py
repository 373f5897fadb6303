"""The broker: every model call, root or sub, goes through here.

Routing picks the client, the tier's budget is checked and the output capped, sub-calls share a
concurrency limit, provider usage is recorded per (tier, model), and events are emitted.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence

import attrs

from rlm_core.engine.budget import RunBudget
from rlm_core.engine.emitter import Emitter
from rlm_core.engine.tokens import TokenEstimator
from rlm_core.errors import ProviderError, RLMError
from rlm_core.events import EventKind
from rlm_core.routing import ClientSet, RoutingPolicy
from rlm_core.types import LMRequest, LMResponse, UsageSummary

_call_ids = itertools.count(1)


class Broker:
    """Shared by a run and its child runs (they share clients, budgets and the sub-call limit)."""

    def __init__(
        self,
        clients: ClientSet,
        policy: RoutingPolicy,
        budget: RunBudget,
        emitter: Emitter,
        max_concurrent_subcalls: int,
        estimators: dict[str, TokenEstimator] | None = None,
    ) -> None:
        self.clients = clients
        self.policy = policy
        self.budget = budget
        self.emitter = emitter
        self.usage = UsageSummary()
        self.estimators = estimators if estimators is not None else {}
        self._sub_slots = asyncio.Semaphore(max_concurrent_subcalls)

    def _names(self, request: LMRequest) -> list[str]:
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
        return list(names)

    async def complete(self, request: LMRequest, parent_run_id: str | None = None) -> LMResponse:
        if request.depth == 0:
            return await self._complete(request, parent_run_id)
        async with self._sub_slots:
            return await self._complete(request, parent_run_id)

    async def _complete(self, request: LMRequest, parent_run_id: str | None) -> LMResponse:
        names = self._names(request)
        last_error: ProviderError | None = None
        for name in names:
            try:
                return await self._call(name, request, parent_run_id)
            except ProviderError as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    async def _call(self, name: str, request: LMRequest, parent_run_id: str | None) -> LMResponse:
        client = self.clients.clients[name]
        tier = self.budget.for_depth(request.depth)
        estimator = self.estimators.setdefault(name, TokenEstimator())
        wanted = request.max_tokens or getattr(client, "max_tokens", None)
        reservation = tier.reserve(estimator.estimate(request.messages), wanted)
        capped = attrs.evolve(request, max_tokens=reservation.max_tokens)
        call_id = f"c{next(_call_ids)}"
        model = getattr(client, "model_name", name)
        self.emitter.emit(
            EventKind.LM_CALL_START, request.run_id, request.depth, parent_run_id,
            call_id=call_id, model=model, purpose=request.purpose, max_tokens=reservation.max_tokens,
        )  # fmt: skip
        started = time.perf_counter()
        try:
            acomplete = getattr(client, "acomplete", None)
            if acomplete is not None:
                response: LMResponse = await acomplete(capped)
            else:
                response = await asyncio.to_thread(client.complete, capped)
        except BaseException as exc:
            tier.settle(reservation, None)
            error = exc if isinstance(exc, ProviderError) else None
            if error is None and isinstance(exc, Exception) and not isinstance(exc, RLMError):
                error = ProviderError(f"{name}: {type(exc).__name__}: {exc}", client=name, model=model)
            self.emitter.emit(
                EventKind.LM_CALL_END, request.run_id, request.depth, parent_run_id,
                call_id=call_id, model=model, purpose=request.purpose, usage=None, error=str(exc),
                duration=time.perf_counter() - started,
            )  # fmt: skip
            if error is not None and error is not exc:
                raise error from exc
            raise
        tier.settle(reservation, response.usage)
        estimator.observe(capped.messages, response.usage.input_tokens)
        if response.cost is None and getattr(client, "price", None) is not None:
            response.cost = client.price.cost(response.usage)
        if not response.latency:
            response.latency = time.perf_counter() - started
        self.usage.record(request.tier, model, response.usage, response.cost)
        self.emitter.emit(
            EventKind.LM_CALL_END, request.run_id, request.depth, parent_run_id,
            call_id=call_id, model=model, purpose=request.purpose, usage=response.usage, error=None,
            duration=response.latency, cost=response.cost,
        )  # fmt: skip
        return response
