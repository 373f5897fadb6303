"""Every setting of an ``RLM``, once: types, defaults and validation, checked at construction.

A bad value fails before any model call, with a message that says what was expected; a budget key
put inside ``backend_kwargs`` says where it belongs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from rlm_core.engine.budget import validate_budget
from rlm_core.engine.run import RunSettings
from rlm_core.environments.runtime import reserved_name_problem
from rlm_core.errors import ConfigurationError
from rlm_core.redact import safe_repr

LIMIT_KEYS = ("max_root_tokens", "max_sub_tokens", "max_cost", "max_llm_calls")


def _int_at_least(minimum: int) -> Any:
    def check(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigurationError(f"{attribute.name} must be an int >= {minimum}, got {safe_repr(value)}")

    return check


def _budget(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):  # never echo what may be a key
        raise ConfigurationError(f"{attribute.name} must be an int >= 50, got {safe_repr(value)}")
    validate_budget(attribute.name, value)


def _positive_or_none(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(
            f"{attribute.name} must be a positive number or None, got {safe_repr(value)}"
        )


def _optional_int_at_least_one(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigurationError(f"{attribute.name} must be an int >= 1 or None, got {safe_repr(value)}")


def logger_settings(spec: str, registry: Any) -> tuple[str, dict[str, Any]]:
    """``"jsonl:./logs"`` -> ``("jsonl", {"log_dir": "./logs"})``: a string logger takes its one
    main setting after a colon (the first setting its factory requires, else its first setting);
    ``"console"`` alone takes none."""
    from rlm_core.plugins.registry import factory_parameters

    name, colon, value = spec.partition(":")
    if not colon:
        return name, {}
    parameters = factory_parameters(registry.get("loggers", name).factory)
    if parameters is None or not parameters.names:
        raise ConfigurationError(
            f"logger {name!r} takes no setting after ':' (got logger={spec!r}); pass logger={name!r} "
            "or a logger object"
        )
    first = parameters.required[0] if parameters.required else parameters.names[0]
    return name, {first: value}


def check_no_limit_keys(kwargs: Mapping[str, Any], where: str) -> None:
    """Limits belong to the RLM, not to one backend's settings."""
    for key in LIMIT_KEYS:
        if key in kwargs:
            raise ConfigurationError(
                f"{key} was given inside {where}; limits belong to the RLM itself: RLM(..., {key}=...)"
            )


@attrs.define(frozen=True)
class RLMConfig:
    """The validated settings of one ``RLM`` (everything but the backends, environment and loggers)."""

    max_root_tokens: int = attrs.field(default=1_000_000, validator=_budget)
    max_sub_tokens: int = attrs.field(default=1_000_000, validator=_budget)
    max_cost: float | None = attrs.field(default=None, validator=_positive_or_none)
    max_llm_calls: int | None = attrs.field(default=None, validator=_optional_int_at_least_one)
    max_iterations: int = attrs.field(default=30, validator=_int_at_least(1))
    max_depth: int = attrs.field(default=1, validator=_int_at_least(1))
    max_timeout: float | None = attrs.field(default=None, validator=_positive_or_none)
    max_concurrent_subcalls: int = attrs.field(default=16, validator=_int_at_least(1))
    max_output_chars: int = attrs.field(default=10_000, validator=_int_at_least(100))
    cell_timeout: float | None = attrs.field(default=None, validator=_positive_or_none)
    custom_tools: dict[str, Any] = attrs.field(factory=dict, converter=dict)
    custom_system_prompt: str | None = None
    compaction_threshold: float = attrs.field(default=0.8)
    persistent: bool = False

    @compaction_threshold.validator
    def _check_compaction(self, _: attrs.Attribute[Any], value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.1 <= value <= 1.0:
            raise ConfigurationError(f"compaction_threshold must be within 0.1..1.0, got {safe_repr(value)}")

    @custom_tools.validator
    def _check_tools(self, _: attrs.Attribute[Any], tools: dict[str, Any]) -> None:
        for name in tools:
            problem = reserved_name_problem(str(name))
            if problem:
                raise ConfigurationError(problem)

    def run_settings(self, backend: str, environment: str) -> RunSettings:
        """What each run of this RLM needs to know."""
        return RunSettings(
            max_iterations=self.max_iterations,
            max_depth=self.max_depth,
            max_timeout=self.max_timeout,
            max_output_chars=self.max_output_chars,
            cell_timeout=self.cell_timeout,
            system_prompt=self.custom_system_prompt,
            compaction_threshold=self.compaction_threshold,
            custom_tools=dict(self.custom_tools),
            backend=backend,
            environment=environment,
            max_root_tokens=self.max_root_tokens,
            max_sub_tokens=self.max_sub_tokens,
            max_cost=self.max_cost,
            max_llm_calls=self.max_llm_calls,
        )
