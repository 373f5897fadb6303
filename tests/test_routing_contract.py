"""The routing contract suite, run against the built-in policies and the sample round-robin plugin."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlm_core.routing import ClientSet, FallbackPolicy, RoutingPolicy, TieredPolicy
from rlm_core.testing.routing_contract import RoutingContract
from rlm_core.types import LMRequest

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plugins" / "rlm_roundrobin"


class TestTieredPolicy(RoutingContract):
    @pytest.fixture
    def policy(self) -> RoutingPolicy:
        return TieredPolicy()


class TestFallbackPolicy(RoutingContract):
    @pytest.fixture
    def policy(self) -> RoutingPolicy:
        return FallbackPolicy()


class TestFallbackPolicyWithAnOrder(RoutingContract):
    @pytest.fixture
    def policy(self) -> RoutingPolicy:
        return FallbackPolicy(order=["small", "m", "large"])


class TestRoundRobinSamplePolicy(RoutingContract):
    @pytest.fixture
    def policy(self, monkeypatch: pytest.MonkeyPatch) -> RoutingPolicy:
        monkeypatch.syspath_prepend(str(SAMPLE))
        from rlm_roundrobin import RoundRobinPolicy

        return RoundRobinPolicy()


class BrokenPolicy:
    """Answers a model name instead of the configured client name: what the contract must catch."""

    def select(self, request: LMRequest, clients: ClientSet) -> str:
        return "gpt-unconfigured"


def test_the_contract_catches_a_policy_that_returns_unconfigured_names() -> None:
    contract = RoutingContract()
    with pytest.raises(AssertionError, match="configured"):
        contract.test_selects_only_configured_names(BrokenPolicy(), "tiered")
    with pytest.raises(AssertionError):
        contract.test_routes_a_real_rlm_run(BrokenPolicy())


class RandomPolicy:
    """Picks at random: not deterministic, which the contract must catch."""

    def __init__(self) -> None:
        import random

        self.random = random.Random(7)

    def select(self, request: LMRequest, clients: ClientSet) -> str:
        return self.random.choice(sorted(clients.clients))


def test_the_contract_catches_a_random_policy() -> None:
    with pytest.raises(AssertionError, match="do not repeat"):
        RoutingContract().test_answers_are_deterministic(RandomPolicy(), "tiered")
