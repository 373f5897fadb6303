"""rlm-core: Recursive Language Models.

``RLM.completion(prompt)`` loads the prompt into a Python REPL as ``context`` and lets a root model
explore it with code and recursive sub-calls. Heavy modules load on first use, so importing this
package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rlm_core._lazy import lazy_names
from rlm_core._version import __version__
from rlm_core.errors import (
    BudgetExceededError,
    CodeTimeoutError,
    ConfigurationError,
    EnvironmentError_,
    PluginError,
    ProviderError,
    RLMError,
    RunTimeoutError,
    SandboxError,
    SandboxStartError,
    StrategyError,
    UnknownNameError,
)
from rlm_core.plugins.hookspecs import hookimpl, hookspec

_LAZY = {
    "RLM": "rlm_core.rlm",
    "RLMLogger": "rlm_core.loggers.jsonl",
    "ConsoleLogger": "rlm_core.loggers.console",
    "RLMChatCompletion": "rlm_core.types",
    "UsageSummary": "rlm_core.types",
    "ModelUsage": "rlm_core.types",
    "TokenUsage": "rlm_core.types",
    "StopReason": "rlm_core.types",
    "AnswerSource": "rlm_core.types",
    "LMRequest": "rlm_core.types",
    "LMResponse": "rlm_core.types",
    "Message": "rlm_core.types",
    "LMClient": "rlm_core.clients.base",
    "BaseClient": "rlm_core.clients.base",
    "Price": "rlm_core.clients.base",
    "Environment": "rlm_core.environments.base",
    "ExecResult": "rlm_core.environments.base",
    "RoutingPolicy": "rlm_core.routing",
    "ClientSet": "rlm_core.routing",
    "RunLogger": "rlm_core.loggers.base",
    "RunEvent": "rlm_core.events",
    "EventKind": "rlm_core.events",
    "Strategy": "rlm_core.guidance.strategy",
    "BaseStrategy": "rlm_core.guidance.strategy",
}

__all__ = [
    "BudgetExceededError",
    "CodeTimeoutError",
    "ConfigurationError",
    "EnvironmentError_",
    "PluginError",
    "ProviderError",
    "RLMError",
    "RunTimeoutError",
    "SandboxError",
    "SandboxStartError",
    "StrategyError",
    "UnknownNameError",
    "__version__",
    "hookimpl",
    "hookspec",
    *_LAZY,
]


__getattr__ = lazy_names(__name__, globals(), _LAZY)


if TYPE_CHECKING:
    from rlm_core.clients.base import BaseClient, LMClient, Price
    from rlm_core.environments.base import Environment, ExecResult
    from rlm_core.events import EventKind, RunEvent
    from rlm_core.guidance.strategy import BaseStrategy, Strategy
    from rlm_core.loggers.base import RunLogger
    from rlm_core.loggers.console import ConsoleLogger
    from rlm_core.loggers.jsonl import RLMLogger
    from rlm_core.rlm import RLM
    from rlm_core.routing import ClientSet, RoutingPolicy
    from rlm_core.types import (
        AnswerSource,
        LMRequest,
        LMResponse,
        Message,
        ModelUsage,
        RLMChatCompletion,
        StopReason,
        TokenUsage,
        UsageSummary,
    )
