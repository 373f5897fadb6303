"""A package's public names that load on first use: ``__getattr__ = lazy_names(__name__, vars(), {name:
module})`` imports the module the first time the name is read and keeps the value, so later reads cost
nothing and importing the package itself stays cheap."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any


def lazy_names(
    package: str, namespace: MutableMapping[str, Any], names: Mapping[str, str]
) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package``: each of ``names`` is read from its module."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
