"""Every setting of an ``RLM``, once: type, default, meaning and validation, in ``RLMConfig``.

``RLM()`` takes its defaults from here, a run reads it (``RunSettings`` adds the run's backend and
environment names), ``rlm batch`` items may set the fields marked per-item, and ``rlm run``'s help
shows each field's ``doc``. A bad value fails before any model call, with a message that says what
was expected; a budget key put inside ``backend_kwargs`` says where it belongs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from rlm_core.environments.runtime import reserved_name_problem
from rlm_core.errors import ConfigurationError
from rlm_core.redact import safe_repr

LIMIT_KEYS = ("max_root_tokens", "max_sub_tokens", "max_cost", "max_llm_calls")
MIN_BUDGET = 50  # tokens: below this not even a short prompt and reply fit


def validate_budget(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{name} must be an int >= {MIN_BUDGET}, got {safe_repr(value)}")
    if value < MIN_BUDGET:
        raise ConfigurationError(f"{name} must be >= {MIN_BUDGET} tokens, got {value}")
    return value


def _int_at_least(minimum: int) -> Any:
    def check(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigurationError(f"{attribute.name} must be an int >= {minimum}, got {safe_repr(value)}")

    return check


def _budget(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
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


def _compaction_share(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.1 <= value <= 1.0:
        raise ConfigurationError(f"{attribute.name} must be within 0.1..1.0, got {safe_repr(value)}")


def _tool_names(_: Any, attribute: attrs.Attribute[Any], tools: dict[str, Any]) -> None:
    for name in tools:
        problem = reserved_name_problem(str(name))
        if problem:
            raise ConfigurationError(problem)


def _setting(default: Any, doc: str, validator: Any = None, *, item: bool = False, **field: Any) -> Any:
    """A field of ``RLMConfig``: its default, what it means (for help texts) and whether a batch
    item may set it for itself."""
    return attrs.field(default=default, validator=validator, metadata={"doc": doc, "item": item}, **field)


def check_no_limit_keys(kwargs: Mapping[str, Any], where: str) -> None:
    """Limits belong to the RLM, not to one backend's settings."""
    for key in LIMIT_KEYS:
        if key in kwargs:
            raise ConfigurationError(
                f"{key} was given inside {where}; limits belong to the RLM itself: RLM(..., {key}=...)"
            )


@attrs.define(frozen=True)
class RLMConfig:
    """The validated settings of one ``RLM`` (everything but the backends, environment, routing,
    loggers and strategy, which are plugins)."""

    max_root_tokens: int = _setting(
        1_000_000, "token limit of the depth-0 (root) calls, per completion", _budget, item=True
    )
    max_sub_tokens: int = _setting(
        1_000_000, "token limit of all deeper calls together, per completion", _budget, item=True
    )
    max_cost: float | None = _setting(None, "USD limit of a completion (needs prices)", _positive_or_none)
    max_llm_calls: int | None = _setting(
        None, "limit of model calls (root and sub together) per completion", _optional_int_at_least_one
    )
    max_iterations: int = _setting(30, "root turns before the last-turn request", _int_at_least(1), item=True)
    max_depth: int = _setting(
        1, "1: rlm_query is a plain sub-call; 2+: it starts a child RLM", _int_at_least(1), item=True
    )
    max_timeout: float | None = _setting(
        None, "wall-clock limit of a completion, in seconds", _positive_or_none, item=True
    )
    max_concurrent_subcalls: int = _setting(
        16, "sub-calls in flight at once, per completion tree", _int_at_least(1), item=True
    )
    max_output_chars: int = _setting(
        10_000, "REPL output shown to the model per code block", _int_at_least(100), item=True
    )
    cell_timeout: float | None = _setting(
        None, "limit of one code block, in seconds", _positive_or_none, item=True
    )
    custom_tools: dict[str, Any] = attrs.field(
        factory=dict,
        converter=lambda tools: dict(tools or {}),
        validator=_tool_names,
        metadata={"doc": "functions and values the REPL code may use by name", "item": False},
    )
    custom_system_prompt: str | None = _setting(None, "replaces the system prompt", item=True)
    compaction_threshold: float = _setting(
        0.8, "share of the root model's window at which history is compacted", _compaction_share, item=True
    )
    persistent: bool = _setting(False, "keep the REPL across completions (multi-turn)")

    def run_settings(self, backend: str, environment: str) -> RunSettings:
        """What each run of this RLM needs to know."""
        return RunSettings(**attrs.asdict(self, recurse=False), backend=backend, environment=environment)


@attrs.define(frozen=True)
class RunSettings(RLMConfig):
    """An RLM's settings as one of its runs reads them, with the names of its root backend and
    environment (for the log)."""

    backend: str = ""
    environment: str = ""


DEFAULTS = RLMConfig()

# RLM(...) arguments a batch item may set for itself: limits and prompting, never clients or loggers
# (those are the job's, so one set of connections and one rate limit serve every item).
ITEM_SETTINGS = frozenset(
    {f.name for f in attrs.fields(RLMConfig) if f.metadata.get("item")} | {"strategy", "strategy_kwargs"}
)


def setting_doc(name: str) -> str:
    """The one-line meaning of a setting, with its default (for help texts)."""
    field = attrs.fields_dict(RLMConfig)[name]
    default = field.default
    shown = "none" if default is None else f"{default:,}" if isinstance(default, int) else str(default)
    return f"{field.metadata['doc']} (default: {shown})"
