"""Routing policies: which configured client serves each model call.

A policy is any object with ``select(request, clients) -> name | [names]``; a list means "try these in
order when a provider fails". Built-ins: ``tiered`` (the default) and ``fallback``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from rlm_core.errors import ConfigurationError
from rlm_core.types import LMRequest


@attrs.define
class ClientSet:
    """The clients one RLM was configured with.

    ``clients`` maps a unique name (the model name, or ``backend:model`` when two backends share a
    model name) to the client; ``tiers[0]`` names the root client and ``tiers[d]`` the client for depth
    ``d`` (the last entry repeats for deeper calls).
    """

    clients: dict[str, Any]
    tiers: list[str]
    backends: dict[str, str] = attrs.field(factory=dict)  # name -> backend
    # The running completion's limits (set on the broker's per-completion copy; None outside a run).
    budget: Any = None

    def price(self, name: str) -> Any:
        """The ``Price`` of client ``name`` (USD per million input/output tokens), or None if unknown."""
        return getattr(self.clients[name], "price", None)

    def window(self, name: str) -> int | None:
        """The context window of client ``name`` in tokens, or None if unknown."""
        window = getattr(self.clients[name], "context_window", None)
        return int(window) if window else None

    def remaining_tokens(self) -> dict[str, int]:
        """Tokens the running completion has left per tier (``root``, ``sub``); empty outside a run."""
        return self.budget.remaining_tokens() if self.budget is not None else {}

    def for_depth(self, depth: int) -> str:
        return self.tiers[min(depth, len(self.tiers) - 1)]

    def find(self, model: str) -> str:
        """Resolve a model asked for by code (``llm_query(p, model=...)``) to a client name."""
        if model in self.clients:
            return model
        for name, client in self.clients.items():
            if getattr(client, "model_name", None) == model:
                return name
        raise ConfigurationError(
            f"model {model!r} is not configured for this RLM; configured models: {', '.join(self.clients)}. "
            "Add it with other_backends=[...] / other_backend_kwargs=[{'model_name': ...}]."
        )


@runtime_checkable
class RoutingPolicy(Protocol):
    """Picks the client for a request; may return several names to try in order."""

    def select(self, request: LMRequest, clients: ClientSet) -> str | Sequence[str]: ...


class TieredPolicy:
    """Depth 0 uses the root client, depth d uses ``other_backends[d-1]`` (the last one repeats);
    a model named by code wins."""

    name = "tiered"

    def select(self, request: LMRequest, clients: ClientSet) -> str | Sequence[str]:
        if request.model:
            return clients.find(request.model)
        return clients.for_depth(request.depth)


class FallbackPolicy:
    """Like ``tiered``, but when the chosen provider fails, try the other configured clients in
    tier order (the root client last for sub-calls, so a failing cheap tier falls back upward)."""

    name = "fallback"

    def __init__(self, order: Sequence[str] | None = None) -> None:
        self.order = list(order) if order else None

    def select(self, request: LMRequest, clients: ClientSet) -> str | Sequence[str]:
        first = clients.find(request.model) if request.model else clients.for_depth(request.depth)
        order = self.order or [*clients.tiers[1:], clients.tiers[0], *clients.clients]
        rest = [name for name in dict.fromkeys(order) if name != first and name in clients.clients]
        return [first, *rest]
