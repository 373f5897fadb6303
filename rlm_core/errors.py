"""The exception hierarchy: every error rlm-core raises derives from RLMError."""

from __future__ import annotations

from collections.abc import Iterable


def did_you_mean(name: str, candidates: Iterable[str], cutoff: float = 0.7) -> str:
    """`` Did you mean 'x'?`` for the closest candidate, or an empty string: the one suggestion helper
    of every "unknown name" and "unknown setting" error."""
    import difflib  # only on the error path

    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=cutoff)
    return f" Did you mean {close[0]!r}?" if close else ""


class RLMError(Exception):
    """Base class of every rlm-core error."""


class ConfigurationError(RLMError, ValueError):
    """A constructor argument or setting is invalid; raised before any model call."""


class PluginError(RLMError):
    """A plugin failed to load, registered a duplicate name, or a name is unknown."""


class UnknownNameError(PluginError, KeyError):
    """No plugin registered the requested client, environment, routing policy or logger."""

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return str(self.args[0]) if self.args else ""


class BudgetExceededError(RLMError):
    """A token budget cannot afford a call.

    ``tier`` is ``"root"`` or ``"sub"`` (``"cost"``, ``"calls"`` for the subclasses); ``limit``/``used``/
    ``needed`` are token counts (USD, calls).
    """

    def __init__(self, tier: str, limit: float, used: float, needed: float) -> None:
        self.tier = tier
        self.limit = limit
        self.used = used
        self.needed = needed
        setting = "max_root_tokens" if tier == "root" else "max_sub_tokens"
        super().__init__(
            f"{tier} token budget exhausted: {used} of {limit} tokens used, this call needs about "
            f"{needed} more. Raise {setting} or do the rest without model calls."
        )


class CostLimitError(BudgetExceededError):
    """``max_cost`` cannot afford a call: ``limit``/``used``/``needed`` are USD."""

    def __init__(self, limit: float, used: float, needed: float) -> None:
        RLMError.__init__(
            self,
            f"cost limit reached: ${used:.4f} of max_cost=${limit:.4f} spent, this call could cost about "
            f"${needed:.4f} more. Raise max_cost or do the rest without model calls.",
        )
        self.tier = "cost"
        self.limit = limit
        self.used = used
        self.needed = needed


class CallLimitError(BudgetExceededError):
    """``max_llm_calls`` model calls (root and sub together) were already started."""

    def __init__(self, limit: int) -> None:
        RLMError.__init__(
            self,
            f"call limit reached: all max_llm_calls={limit} model calls of this completion were made. "
            "Raise max_llm_calls or do the rest without model calls.",
        )
        self.tier = "calls"
        self.limit = limit
        self.used = limit
        self.needed = 1


class ProviderError(RLMError):
    """A model provider failed (HTTP error, timeout, malformed reply) after the SDK's own retries."""

    def __init__(self, message: str, *, client: str = "", model: str = "", retryable: bool = False) -> None:
        self.client = client
        self.model = model
        self.retryable = retryable
        super().__init__(message)


class SandboxError(RLMError):
    """An execution environment (REPL, sandbox) failed, crashed, or was closed."""


class SandboxStartError(SandboxError):
    """A sandbox could not be started: its SDK is missing, its credentials were refused, its engine
    cannot be reached, or its runtime did not come up."""


# The name this error had first; it stays importable.
EnvironmentError_ = SandboxError


class CodeTimeoutError(RLMError, TimeoutError):
    """Code in the REPL ran longer than the environment's per-cell timeout."""


class RunTimeoutError(RLMError, TimeoutError):
    """A completion ran longer than ``max_timeout``."""


class StrategyError(RLMError):
    """A strategy raised, or returned something that is not one of its actions; the run ends with
    ``stop_reason="error"`` and this message, which names the strategy."""
