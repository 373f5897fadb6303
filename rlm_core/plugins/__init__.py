"""The plugin system: hook specifications, the registry that discovers plugins, and the built-ins."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rlm_core.plugins.hookspecs import PROJECT_NAME, Register, hookimpl, hookspec

# The registry imports importlib.metadata and walks entry points: load it on first use only.
_REGISTRY_NAMES = {
    "ENTRY_POINT_GROUP",
    "KINDS",
    "PluginInfo",
    "PluginRegistry",
    "Registration",
    "available",
    "get_registry",
    "reset_registry",
}

__all__ = [
    "ENTRY_POINT_GROUP",
    "KINDS",
    "PROJECT_NAME",
    "PluginInfo",
    "PluginRegistry",
    "Register",
    "Registration",
    "available",
    "get_registry",
    "hookimpl",
    "hookspec",
    "reset_registry",
]


def __getattr__(name: str) -> Any:
    if name in _REGISTRY_NAMES:
        return getattr(importlib.import_module("rlm_core.plugins.registry"), name)
    raise AttributeError(f"module 'rlm_core.plugins' has no attribute {name!r}")


if TYPE_CHECKING:
    from rlm_core.plugins.registry import (
        ENTRY_POINT_GROUP,
        KINDS,
        PluginInfo,
        PluginRegistry,
        Registration,
        available,
        get_registry,
        reset_registry,
    )
