"""The job's settings as they enter each item's input hash: what decides answers, without secrets,
loggers or object identities (which differ on every run and would defeat resuming)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Answers do not depend on these: logging, display, and how a client connects (a rerun through
# another proxy or port, or with a rotated key, still finds its finished items).
_IGNORED = frozenset({"logger", "verbose"})
_CONNECTION = frozenset(
    {"base_url", "timeout", "max_retries", "default_headers", "client_kwargs", "organization", "project"}
)


def _secret(name: str) -> bool:
    lowered = name.lower()
    return (
        lowered in _CONNECTION
        or any(word in lowered for word in ("key", "secret", "password"))
        or lowered.endswith("token")
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=str) if not _secret(str(k))}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return type(value).__name__  # a client or policy object: its kind, not its address


def job_settings_of(source: Mapping[str, Any] | Any) -> dict[str, Any]:
    """From ``rlm_kwargs``, or from an ``RLM`` object's public attributes."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return {k: _plain(v) for k, v in sorted(source.items()) if k not in _IGNORED}
    settings = getattr(source, "settings", None)
    return {
        "backend": _plain(getattr(source, "backend", None)),
        "backend_kwargs": _plain(getattr(source, "backend_kwargs", {})),
        "tiers": [
            _plain(getattr(source.clients.clients[name], "model_name", name)) for name in source.clients.tiers
        ],
        "environment": getattr(source, "environment_name", None),
        "environment_kwargs": _plain(getattr(source, "environment_kwargs", {})),
        "max_root_tokens": getattr(source, "max_root_tokens", None),
        "max_sub_tokens": getattr(source, "max_sub_tokens", None),
        "run": _plain(
            {
                k: getattr(settings, k)
                for k in ("max_iterations", "max_depth", "max_timeout", "custom_system_prompt")
            }
            if settings is not None
            else {}
        ),
    }
