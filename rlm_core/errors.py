"""The exception hierarchy: every error rlm-core raises derives from RLMError."""

from __future__ import annotations


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

    ``tier`` is ``"root"`` or ``"sub"``; ``limit``/``used``/``needed`` are token counts.
    """

    def __init__(self, tier: str, limit: int, used: int, needed: int) -> None:
        self.tier = tier
        self.limit = limit
        self.used = used
        self.needed = needed
        setting = "max_root_tokens" if tier == "root" else "max_sub_tokens"
        super().__init__(
            f"{tier} token budget exhausted: {used} of {limit} tokens used, this call needs about "
            f"{needed} more. Raise {setting} or do the rest without model calls."
        )


class ProviderError(RLMError):
    """A model provider failed (HTTP error, timeout, malformed reply) after the SDK's own retries."""

    def __init__(self, message: str, *, client: str = "", model: str = "", retryable: bool = False) -> None:
        self.client = client
        self.model = model
        self.retryable = retryable
        super().__init__(message)


class EnvironmentError_(RLMError):
    """An execution environment (REPL, sandbox) failed to start, crashed, or was closed."""


SandboxError = EnvironmentError_


class CodeTimeoutError(RLMError, TimeoutError):
    """Code in the REPL ran longer than the environment's per-cell timeout."""


class RunTimeoutError(RLMError, TimeoutError):
    """A completion ran longer than ``max_timeout``."""
