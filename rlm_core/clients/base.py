"""The client contract: how the engine talks to a language model."""

from __future__ import annotations

import abc
import asyncio
from typing import Protocol, runtime_checkable

import attrs

from rlm_core.types import LMRequest, LMResponse, TokenUsage


@attrs.define(frozen=True)
class Price:
    """USD per million tokens."""

    input_per_mtok: float
    output_per_mtok: float

    def cost(self, usage: TokenUsage) -> float:
        return (usage.input_tokens * self.input_per_mtok + usage.output_tokens * self.output_per_mtok) / 1e6


@runtime_checkable
class LMClient(Protocol):
    """A language-model client. Only ``model_name`` and ``complete`` are required.

    Optional members the engine uses when present:

    - ``async acomplete(request) -> LMResponse``: native async (else ``complete`` runs in a thread);
    - ``context_window: int | None``: the model's window in tokens (history compaction);
    - ``price: Price | None``: for cost accounting, when the response carries no cost;
    - ``token_logprobs: bool``: True when the client honours ``request.top_logprobs`` by filling
      ``LMResponse.top_logprobs`` (scored sub-calls, ``llm_query(..., scores=True)``, need it);
    - ``close()`` / ``async aclose()``: release connections.

    ``complete`` must return the provider's own token counts in ``LMResponse.usage``, raise
    ``rlm_core.errors.ProviderError`` for provider failures (after the SDK's own retries), and
    honour ``request.max_tokens`` as the output cap.
    """

    model_name: str

    def complete(self, request: LMRequest) -> LMResponse: ...


class BaseClient(abc.ABC):
    """Convenience base for clients: thread-backed ``acomplete`` and no-op closing."""

    backend: str = ""
    model_name: str = ""
    context_window: int | None = None
    price: Price | None = None
    token_logprobs: bool = False

    @abc.abstractmethod
    def complete(self, request: LMRequest) -> LMResponse:
        """Call the model once (see ``LMClient``)."""

    async def acomplete(self, request: LMRequest) -> LMResponse:
        return await asyncio.to_thread(self.complete, request)

    def close(self) -> None:
        return None

    async def aclose(self) -> None:
        self.close()
