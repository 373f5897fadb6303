"""A sample rlm-core plugin (see docs/writing-plugins.md): a ``round_robin`` routing policy that
spreads sub-calls over all sub-model tiers, and an observer that counts run events per kind."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

import rlm_core

EVENT_COUNTS: Counter[str] = Counter()


class RoundRobinPolicy:
    """Root calls go to the root model; each sub-call goes to the next sub-model in turn.

    A model named by code (``llm_query(p, model=...)``) still wins.
    """

    def __init__(self) -> None:
        self._turns = itertools.count()
        self._lock = threading.Lock()

    def select(self, request: Any, clients: Any) -> str | Sequence[str]:
        if request.model:
            return str(clients.find(request.model))
        if request.depth == 0 or len(clients.tiers) == 1:
            return str(clients.tiers[0])
        sub_tiers = list(dict.fromkeys(clients.tiers[1:]))
        with self._lock:
            turn = next(self._turns)
        return str(sub_tiers[turn % len(sub_tiers)])


@rlm_core.hookimpl
def rlm_register_routing_policies(register: Any) -> None:
    register("round_robin", lambda **kwargs: RoundRobinPolicy(**kwargs))


@rlm_core.hookimpl
def rlm_on_event(event: Any) -> None:
    EVENT_COUNTS[event.kind.value] += 1
