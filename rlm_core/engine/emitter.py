"""Delivers run events to the RLM's loggers and to plugin observers; neither can break a run, and
neither sees a secret: event data is redacted once, before anyone receives it."""

from __future__ import annotations

import traceback
import warnings
from typing import Any

import attrs

from rlm_core.events import EventKind, RunEvent
from rlm_core.loggers.base import RunLogger
from rlm_core.plugins.registry import PluginRegistry
from rlm_core.redact import redact
from rlm_core.types import RLMChatCompletion

PROMPT_PREVIEW_CHARS = 500


def _safe(data: dict[str, Any]) -> dict[str, Any]:
    """Event data fit to leave the engine: secrets masked, and the (possibly huge) context of a
    finished run cut to a preview."""
    result = data.get("result")
    if isinstance(result, RLMChatCompletion):
        prompt = result.prompt if isinstance(result.prompt, str) else repr(result.prompt)
        data = {**data, "result": attrs.evolve(result, prompt=prompt[:PROMPT_PREVIEW_CHARS])}
    safe: dict[str, Any] = redact(data)
    return safe


class Emitter:
    def __init__(self, loggers: list[RunLogger], registry: PluginRegistry) -> None:
        self.loggers = loggers
        self.registry = registry
        self._observers = registry.has_observers()
        self._reported: set[int] = set()

    def emit(
        self, kind: EventKind, run_id: str, depth: int, parent_run_id: str | None = None, **data: Any
    ) -> None:
        if not self.loggers and not self._observers:
            return
        event = RunEvent(kind=kind, run_id=run_id, depth=depth, data=_safe(data), parent_run_id=parent_run_id)
        for logger in self.loggers:
            try:
                logger.on_event(event)
            except Exception:
                if id(logger) not in self._reported:
                    self._reported.add(id(logger))
                    warnings.warn(
                        f"logger {logger!r} raised (reported once, the run goes on):\n"
                        f"{traceback.format_exc()}",
                        RuntimeWarning,
                        stacklevel=2,
                    )
        if self._observers:
            self.registry.emit(event)
