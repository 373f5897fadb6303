"""The core's routing contract, run against the cost policy with its default and its non-default settings."""

from __future__ import annotations

import pytest
from rlm_costroute import CostPolicy

from rlm_core.routing import RoutingPolicy
from rlm_core.testing.routing_contract import RoutingContract


class TestCostPolicy(RoutingContract):
    @pytest.fixture
    def policy(self) -> RoutingPolicy:
        return CostPolicy()


class TestCostPolicyRoutingRootCallsWithoutFallback(RoutingContract):
    @pytest.fixture
    def policy(self) -> RoutingPolicy:
        return CostPolicy(long_prompt_tokens=1_000, route_root=True, fallback=False, bytes_per_token=4.0)
