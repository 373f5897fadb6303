"""rlm-costroute: the ``cost`` routing policy for rlm-core (cheapest model for short prompts, largest
window for long ones), registered through the ``rlm`` entry point group."""

from __future__ import annotations

from typing import Any

import rlm_core
from rlm_costroute.policy import CostPolicy, PromptTooLongError, estimate_tokens

__all__ = ["CostPolicy", "PromptTooLongError", "estimate_tokens"]
__version__ = "0.2.0"


@rlm_core.hookimpl
def rlm_register_routing_policies(register: Any) -> None:
    register("cost", CostPolicy)
