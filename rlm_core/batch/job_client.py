"""A client wrapper that puts every model call of a job under one rate limit, one live usage count
and, for temperature-0 sub-calls, the optional sub-call cache. The engine sees an ordinary client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from rlm_core.batch.cache import SubCallCache
from rlm_core.types import LMRequest, LMResponse

UsageSink = Callable[[LMRequest, LMResponse], None]


class JobClient:
    """Wraps one configured client. ``limit`` is shared by every client of the job, so provider rate
    limits see one bounded stream of calls, not one per item; ``on_usage`` sees each reply."""

    def __init__(
        self,
        client: Any,
        *,
        limit: contextlib.AbstractAsyncContextManager[Any] | None = None,
        on_usage: UsageSink | None = None,
        cache: SubCallCache | None = None,
    ) -> None:
        self.inner = client
        self.model_name = str(getattr(client, "model_name", "") or "")
        self._limit = limit
        self._on_usage = on_usage
        # Only deterministic calls may be replayed: temperature 0 set on the client itself.
        self._cache = cache if getattr(client, "temperature", None) == 0 else None

    def __getattr__(self, name: str) -> Any:
        # context_window, price, max_tokens, temperature...: whatever the engine reads of the client.
        return getattr(self.inner, name)

    def complete(self, request: LMRequest) -> LMResponse:
        raise TypeError("JobClient is async only; the engine calls acomplete")

    async def acomplete(self, request: LMRequest) -> LMResponse:
        # Scored calls are not cached: the cache keeps a reply's text, not its token alternatives.
        use_cache = self._cache is not None and request.depth >= 1 and not request.top_logprobs
        if use_cache:
            assert self._cache is not None
            hit = await asyncio.to_thread(self._cache.get, self.model_name, request)
            if hit is not None:
                self._record(request, hit)
                return hit
        async with self._limit if self._limit is not None else contextlib.nullcontext():
            response = await self._call(request)
        if use_cache:
            assert self._cache is not None
            await asyncio.to_thread(self._cache.put, self.model_name, request, response)
        self._record(request, response)
        return response

    async def _call(self, request: LMRequest) -> LMResponse:
        acomplete = getattr(self.inner, "acomplete", None)
        if acomplete is not None:
            response: LMResponse = await acomplete(request)
            return response
        response = await asyncio.to_thread(self.inner.complete, request)
        return response

    def _record(self, request: LMRequest, response: LMResponse) -> None:
        if response.cost is None and getattr(self.inner, "price", None) is not None:
            response.cost = self.inner.price.cost(response.usage)  # as the broker would
        if self._on_usage is not None:
            self._on_usage(request, response)

    async def aclose(self) -> None:
        aclose = getattr(self.inner, "aclose", None)
        if aclose is not None:
            await aclose()
        else:
            close = getattr(self.inner, "close", None)
            if close is not None:
                close()

    def __repr__(self) -> str:
        return f"JobClient({self.inner!r})"


def wrap_clients(rlm: Any, make: Callable[[Any], JobClient]) -> dict[str, Any]:
    """Replace each client of ``rlm`` with ``make(client)``; returns the originals to restore later."""
    originals = dict(rlm.clients.clients)
    for name, client in originals.items():
        rlm.clients.clients[name] = make(client)
    return originals
