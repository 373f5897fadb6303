"""The ``cost`` routing policy: short prompts to the cheapest model, long ones to the largest window."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rlm_core.errors import ConfigurationError, RLMError

if TYPE_CHECKING:  # discovery imports this module: keep it to what the policy needs at run time
    from rlm_core import ClientSet, LMRequest, Message

# Role markers and separators a chat template adds per message and per request (the core counts the same).
PER_MESSAGE_TOKENS = 8
PER_REQUEST_TOKENS = 8


class PromptTooLongError(RLMError):
    """No configured model has a context window the prompt is known to fit."""


def estimate_tokens(messages: Sequence[Message], bytes_per_token: float = 1.0) -> int:
    """An upper bound on the prompt's tokens: byte-level BPE tokenizers never use more than one token
    per UTF-8 byte, so the default ``bytes_per_token=1.0`` never underestimates."""
    size = sum(len(m.content.encode("utf-8", "replace")) for m in messages)
    return math.ceil(size / bytes_per_token) + PER_MESSAGE_TOKENS * len(messages) + PER_REQUEST_TOKENS


class CostPolicy:
    """Routes each sub-call by the prompt's estimated size.

    - A model named by code (``llm_query(p, model=...)``) always wins.
    - Root calls (depth 0) go to the root model unless ``route_root=True``.
    - A prompt of at most ``long_prompt_tokens`` goes to the cheapest model that fits it; a longer one
      to the model with the largest known context window that fits it.
    - "Fits": ``prompt + reply <= context_window``, the reply being ``request.max_tokens`` or, when the
      request sets none, ``expected_output_tokens``. A client without a ``context_window`` is assumed
      to fit (the provider will say if not); for a long prompt it ranks after every client whose window
      is known to fit. When every candidate's window is known and none fits, :class:`PromptTooLongError` says so (inside the REPL,
      the model reads it and can split the prompt).
    - Cost of a call: ``prompt * input price + reply * output price`` from ``client.price``, the reply
      being ``expected_output_tokens`` (or ``max_tokens`` when smaller).
      A client without a price ranks after every priced one. Ties keep the configuration order (root
      model first, then ``other_backends`` in order).

    ``select`` returns every fitting model, best first, so the engine falls back along the ranking when a
    provider fails; ``fallback=False`` returns only the best one.
    """

    name = "cost"

    def __init__(
        self,
        long_prompt_tokens: int = 16_000,
        route_root: bool = False,
        expected_output_tokens: int = 500,
        bytes_per_token: float = 1.0,
        models: Sequence[str] | None = None,
        fallback: bool = True,
    ) -> None:
        for setting, value in (
            ("long_prompt_tokens", long_prompt_tokens),
            ("expected_output_tokens", expected_output_tokens),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{setting} must be a positive int of tokens, got {value!r}")
        if not isinstance(bytes_per_token, int | float) or not 1.0 <= bytes_per_token <= 8.0:
            raise ConfigurationError(
                f"bytes_per_token must be between 1.0 (a guaranteed upper bound) and 8.0, got {bytes_per_token!r}; "
                "English text averages about 4 bytes per token"
            )
        if models is not None and (isinstance(models, str) or not models):
            raise ConfigurationError(
                f"models must be a non-empty list of configured model names, got {models!r}"
            )
        self.long_prompt_tokens = long_prompt_tokens
        self.route_root = route_root
        self.expected_output_tokens = expected_output_tokens
        self.bytes_per_token = float(bytes_per_token)
        self.models = list(models) if models is not None else None
        self.fallback = fallback

    def __repr__(self) -> str:
        return f"CostPolicy(long_prompt_tokens={self.long_prompt_tokens}, route_root={self.route_root})"

    def select(self, request: LMRequest, clients: ClientSet) -> str | Sequence[str]:
        if request.model:
            return clients.find(request.model)
        if request.depth == 0 and not self.route_root:
            return clients.for_depth(0)
        prompt = estimate_tokens(request.messages, self.bytes_per_token)
        reply = request.max_tokens or self.expected_output_tokens
        needed = prompt + reply
        candidates = self._candidates(clients)
        windows = {name: _window(clients.clients[name]) for name in candidates}
        fitting = [name for name, window in windows.items() if window is None or needed <= window]
        if not fitting:
            largest = max(windows, key=lambda name: windows[name] or 0)
            raise PromptTooLongError(
                f"a prompt of about {prompt} tokens (plus {reply} for the reply) fits no "
                f"configured model; the largest window is {largest!r} with {windows[largest]} "
                "tokens. Split the prompt into smaller pieces, or configure a model with a larger window"
            )
        ranked = sorted(fitting, key=lambda name: self._rank(name, clients, prompt, request, candidates))
        return ranked if self.fallback else ranked[0]

    def _candidates(self, clients: ClientSet) -> list[str]:
        if self.models is None:
            return list(clients.clients)
        return list(dict.fromkeys(clients.find(model) for model in self.models))

    def _rank(
        self, name: str, clients: ClientSet, prompt: int, request: LMRequest, order: list[str]
    ) -> tuple[Any, ...]:
        client = clients.clients[name]
        output = min(request.max_tokens or self.expected_output_tokens, self.expected_output_tokens)
        price = getattr(client, "price", None)
        cost = (0, prompt * price.input_per_mtok + output * price.output_per_mtok) if price else (1, 0.0)
        if prompt <= self.long_prompt_tokens:
            return (*cost, order.index(name))
        window = _window(client)
        return (window is None, -(window or 0), *cost, order.index(name))


def _window(client: Any) -> int | None:
    window = getattr(client, "context_window", None)
    return window if isinstance(window, int) and window > 0 else None
