"""What settings a plugin factory takes, and lazy factories.

``lazy_factory("module:Class")`` builds the class on first call, importing its module only then,
and is marked with the class whose settings it takes (``kwargs_of``); ``factory_parameters`` reads
a factory's settings (following that mark), so the registry checks settings when an RLM is built.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import attrs

__all__ = [
    "SIGNATURE_ATTRIBUTE",
    "Parameters",
    "factory_parameters",
    "kwargs_of",
    "lazy_factory",
    "resolve_target",
]

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
    qualname = target.partition(":")[2]

    def factory(**kwargs: Any) -> Any:
        return resolve_target(target)(**kwargs)

    factory.__name__ = factory.__qualname__ = f"lazy_{qualname.replace('.', '_')}"
    factory.__doc__ = f"Builds {target} (imported on first use)."
    return kwargs_of(target)(factory)


def resolve_target(target: str) -> Any:
    """The object ``target`` ("module:qualname") names, importing its module."""
    module_name, _, qualname = target.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


# A factory that only forwards ``**kwargs`` (to import its class lazily) names the callable whose
# signature its settings follow in this attribute, as "module:qualname" (see ``kwargs_of``).
@attrs.define(frozen=True)
class Parameters:
    """The settings a factory takes: named ones, the required among them, and whether it also
    forwards unknown ones (``**kwargs``) somewhere."""

    names: tuple[str, ...]
    required: tuple[str, ...]
    open: bool


def factory_parameters(factory: Callable[..., Any], follow_bases: bool = False) -> Parameters | None:
    """The settings ``factory`` takes, or None when they cannot be known without calling it.

    With ``follow_bases``, for a class the ``__init__`` methods along its MRO are read while each
    forwards ``**kwargs`` to the next (a client subclass adding one setting to its base's).
    """
    marked = getattr(factory, SIGNATURE_ATTRIBUTE, None)
    target: Any = resolve_target(marked) if isinstance(marked, str) else factory
    callables = (
        [vars(c)["__init__"] for c in target.__mro__ if "__init__" in vars(c)]
        if inspect.isclass(target)
        else [target]
    )
    names: list[str] = []
    required: list[str] = []
    is_open = False
    for function in callables:
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):
            return None
        is_open = False
        for parameter in list(signature.parameters.values())[1 if inspect.isclass(target) else 0 :]:
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                is_open = True
            elif parameter.kind is not inspect.Parameter.VAR_POSITIONAL and parameter.name not in names:
                names.append(parameter.name)
                if parameter.default is inspect.Parameter.empty:
                    required.append(parameter.name)
        if not is_open or not follow_bases:
            break
    if is_open and not names:
        return None  # a bare **kwargs forwarder: nothing to check against
    return Parameters(tuple(names), tuple(required), is_open)
