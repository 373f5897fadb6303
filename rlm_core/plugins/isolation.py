"""Per-plugin failure isolation for hooks called through pluggy.

Each plugin is registered with pluggy as a stand-in whose hook implementations catch their own
exception and report it (naming the plugin) instead of raising it, so a hook call goes through
pluggy as its documentation describes (``firstresult``, wrappers, tracing) while one broken
plugin never stops the others. Hook wrappers are passed through untouched.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import Any

from rlm_core.plugins.hookspecs import PROJECT_NAME

_MARKER = f"{PROJECT_NAME}_impl"

# The plugin whose implementation is running now (a ``register`` callback reads it to know who calls).
current_plugin: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "rlm_current_plugin", default=None
)

ErrorHandler = Callable[[str, str, Exception], None]
Tracer = Callable[[str, str], None]


class IsolatedPlugin:
    """A stand-in for ``plugin``: the same hook implementations, each reporting instead of raising."""

    def __init__(
        self, plugin: object, name: str, on_error: ErrorHandler, trace: Tracer | None = None
    ) -> None:
        self.original = plugin
        self.__name__ = name
        for attribute in dir(plugin):
            if attribute.startswith("__"):
                continue
            try:
                function = getattr(plugin, attribute)
            except Exception:
                continue
            options = getattr(function, _MARKER, None)
            if options is None or not callable(function):
                continue
            if options.get("wrapper") or options.get("hookwrapper"):
                setattr(self, attribute, function)
            else:
                setattr(self, attribute, _isolate(function, name, attribute, on_error, trace))


def _isolate(
    function: Callable[..., Any], plugin: str, hook: str, on_error: ErrorHandler, trace: Tracer | None
) -> Callable[..., Any]:
    # functools.wraps keeps __wrapped__, from which pluggy reads the argument names, and the marker.
    @functools.wraps(function)
    def isolated(*args: Any, **kwargs: Any) -> Any:
        if trace is not None:
            trace(plugin, hook)
        token = current_plugin.set(plugin)
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            on_error(plugin, hook, exc)
            return None
        finally:
            current_plugin.reset(token)

    return isolated
