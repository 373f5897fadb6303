"""Lazy factories: ``lazy_factory("module:Class")`` builds the class on first call, importing its
module only then, and is marked with the class whose settings it takes (``kwargs_of``), so settings
are checked when an RLM is built (the registry reads the mark)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["SIGNATURE_ATTRIBUTE", "kwargs_of", "lazy_factory"]

SIGNATURE_ATTRIBUTE = "rlm_kwargs_of"


def kwargs_of(target: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a lazy factory as taking the settings of ``target`` ("module:Class"), so a misspelt
    setting is caught, with a suggestion, when the RLM is built rather than at the first call.
    The module is imported only when settings are checked."""

    def mark(factory: Callable[..., Any]) -> Callable[..., Any]:
        setattr(factory, SIGNATURE_ATTRIBUTE, target)
        return factory

    return mark


def lazy_factory(target: str) -> Callable[..., Any]:
    """A factory for ``target`` ("module:Class"): plugin discovery imports nothing, the first call
    imports the module, and the settings are the class's own (``kwargs_of``)."""
    module_name, _, qualname = target.partition(":")

    def factory(**kwargs: Any) -> Any:
        built: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            built = getattr(built, part)
        return built(**kwargs)

    factory.__name__ = factory.__qualname__ = f"lazy_{qualname.replace('.', '_')}"
    factory.__doc__ = f"Builds {target} (imported on first use)."
    return kwargs_of(target)(factory)
