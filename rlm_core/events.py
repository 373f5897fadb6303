"""Run events: what observers (``rlm_on_event``) and loggers receive as a run goes."""

from __future__ import annotations

import enum
import time
from typing import Any

import attrs


class EventKind(enum.StrEnum):
    RUN_START = "run_start"
    RUN_END = "run_end"
    ITERATION_START = "iteration_start"
    ITERATION_END = "iteration_end"
    LM_CALL_START = "lm_call_start"
    LM_CALL_END = "lm_call_end"
    CODE_START = "code_start"
    CODE_END = "code_end"
    SUBCALL_START = "subcall_start"
    SUBCALL_END = "subcall_end"


@attrs.define(frozen=True)
class RunEvent:
    """One event. ``data`` holds kind-specific records:

    - run_start: ``metadata`` (a ``RunMetadata``)
    - run_end: ``result`` (an ``RLMChatCompletion``)
    - iteration_start: ``iteration`` (int)
    - iteration_end: ``record`` (an ``IterationRecord``)
    - lm_call_start / lm_call_end: ``call_id``, ``model``, ``purpose``; at end ``usage``, ``error``
    - code_start / code_end: ``code``; at end ``result`` (an ``ExecResult``)
    - subcall_start / subcall_end: ``call_id``, ``function``, ``model``; at end ``record``
      (a ``SubCallRecord``)
    """

    kind: EventKind
    run_id: str
    depth: int
    data: dict[str, Any] = attrs.field(factory=dict)
    parent_run_id: str | None = None
    timestamp: float = attrs.field(factory=time.time)
    monotonic: float = attrs.field(factory=time.perf_counter)
