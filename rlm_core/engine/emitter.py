"""Delivers run events to the RLM's loggers and to plugin observers; neither can break a run, and
neither sees a secret: event data is redacted once, before anyone receives it."""

from __future__ import annotations

import secrets
import traceback
import warnings
from typing import Any

import attrs

from rlm_core.events import EventKind, RunEnded, RunEvent
from rlm_core.loggers.base import RunLogger
from rlm_core.plugins.registry import PluginRegistry
from rlm_core.redact import redact

PROMPT_PREVIEW_CHARS = 500


def new_span_id() -> str:
    """A span id: unique within a process and short enough to read in a log."""
    return secrets.token_hex(8)


def _safe(payload: Any) -> Any:
    """A payload fit to leave the engine: secrets masked, and the (possibly huge) context of a
    finished run cut to a preview."""
    if isinstance(payload, RunEnded):
        result = payload.result
        prompt = result.prompt if isinstance(result.prompt, str) else repr(result.prompt)
        payload = attrs.evolve(payload, result=attrs.evolve(result, prompt=prompt[:PROMPT_PREVIEW_CHARS]))
    return redact(payload)


class Emitter:
    def __init__(self, loggers: list[RunLogger], registry: PluginRegistry) -> None:
        self.loggers = loggers
        self.registry = registry
        self._observers = registry.has_observers()
        self._reported: set[int] = set()

    @property
    def active(self) -> bool:
        """Whether anyone listens (so callers can skip building payloads nobody reads)."""
        return bool(self.loggers or self._observers)

    def emit(
        self,
        kind: EventKind,
        payload: Any,
        *,
        run_id: str,
        depth: int,
        span_id: str,
        parent_span_id: str | None,
        parent_run_id: str | None = None,
    ) -> None:
        if not self.loggers and not self._observers:
            return
        event = RunEvent(
            kind=kind,
            run_id=run_id,
            depth=depth,
            payload=_safe(payload),
            parent_run_id=parent_run_id,
            span_id=span_id,
            parent_span_id=parent_span_id,
        )
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
