"""Marking a lazy factory with the class whose settings it takes, so settings are checked when an
RLM is built (the registry reads the mark; factories import nothing until they are called)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["SIGNATURE_ATTRIBUTE", "kwargs_of"]

SIGNATURE_ATTRIBUTE = "rlm_kwargs_of"


def kwargs_of(target: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a lazy factory as taking the settings of ``target`` ("module:Class"), so a misspelt
    setting is caught, with a suggestion, when the RLM is built rather than at the first call.
    The module is imported only when settings are checked."""

    def mark(factory: Callable[..., Any]) -> Callable[..., Any]:
        setattr(factory, SIGNATURE_ATTRIBUTE, target)
        return factory

    return mark
