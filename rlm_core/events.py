"""Run events (**contract**): what loggers (per RLM) and ``rlm_on_event`` observers (per process) receive.

Events form a tree of spans: run → iteration → code cell → sub-call (``llm_query``/``rlm_query``; a
batched call is a ``batch`` span whose slots are sub-calls) → model call → child run. Every event
carries its own ``span_id`` and its parent's ``parent_span_id``; a start and its end share the span.
So an exporter (OpenTelemetry, the viewer) nests everything from the ids alone, without guessing.

Which to use: a logger (``RLM(logger=...)``) sees the runs of one RLM; an ``rlm_on_event`` hook
sees every run in the process (tracing, metrics). Neither may steer a run.
"""

from __future__ import annotations

import enum
import time
from typing import TYPE_CHECKING, Any

import attrs

from rlm_core.types import TokenUsage

if TYPE_CHECKING:
    from rlm_core.records import CallOutcome, IterationRecord, RunMetadata, SubCallRecord
    from rlm_core.types import ExecResult, RLMChatCompletion


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
    BATCH_START = "batch_start"
    BATCH_END = "batch_end"
    STRATEGY_ACTION = "strategy_action"


# -- typed payloads, one per kind ------------------------------------------------------------------


@attrs.define(frozen=True)
class RunStarted:
    """A run began (the root completion, or a child RLM started by ``rlm_query``)."""

    metadata: RunMetadata


@attrs.define(frozen=True)
class RunEnded:
    """A run ended; ``result.stop_reason`` says why. ``duration`` in seconds."""

    result: RLMChatCompletion
    duration: float = 0.0


@attrs.define(frozen=True)
class IterationStarted:
    iteration: int


@attrs.define(frozen=True)
class IterationEnded:
    """``record`` holds the reply, the code cells, the engine's notes and the usage of the turn."""

    record: IterationRecord
    duration: float = 0.0


@attrs.define(frozen=True)
class ModelCallStarted:
    """The broker is about to call ``client`` (the configured client's name) for ``model``."""

    call_id: str
    client: str
    model: str
    tier: str
    purpose: str
    max_tokens: int


@attrs.define(frozen=True)
class ModelCallEnded:
    """A model call ended; ``outcome`` is the ledger's record of it (usage, cost, latency, error)."""

    call_id: str
    model: str
    purpose: str
    outcome: CallOutcome
    usage: TokenUsage | None = None
    error: str | None = None
    duration: float = 0.0
    cost: float | None = None


@attrs.define(frozen=True)
class CodeStarted:
    code: str


@attrs.define(frozen=True)
class CodeEnded:
    code: str
    result: ExecResult
    duration: float = 0.0


@attrs.define(frozen=True)
class SubcallStarted:
    """``llm_query``/``rlm_query`` (or a custom tool) was called from REPL code.

    ``batch_index`` is the slot's position when the call is one slot of a batched call.
    """

    call_id: str
    function: str
    model: str
    batch_index: int | None = None


@attrs.define(frozen=True)
class SubcallEnded:
    call_id: str
    function: str
    record: SubCallRecord
    duration: float = 0.0


@attrs.define(frozen=True)
class BatchStarted:
    """``llm_query_batched``/``rlm_query_batched`` began: ``size`` slots follow as sub-call spans."""

    function: str
    size: int
    model: str = ""


@attrs.define(frozen=True)
class BatchEnded:
    function: str
    size: int
    failed: int = 0
    duration: float = 0.0


@attrs.define(frozen=True)
class StrategyActed:
    """A strategy acted on the run (``rlm_core.guidance.strategy``): ``strategy`` is its name,
    ``action`` the action as a dict (``{"action": "tell", "text": ..., "why": ...}``)."""

    strategy: str
    action: dict[str, Any]
    iteration: int = 0


Payload = (
    RunStarted
    | RunEnded
    | IterationStarted
    | IterationEnded
    | ModelCallStarted
    | ModelCallEnded
    | CodeStarted
    | CodeEnded
    | SubcallStarted
    | SubcallEnded
    | BatchStarted
    | BatchEnded
    | StrategyActed
)

PAYLOAD_TYPES: dict[EventKind, type[Any]] = {
    EventKind.RUN_START: RunStarted,
    EventKind.RUN_END: RunEnded,
    EventKind.ITERATION_START: IterationStarted,
    EventKind.ITERATION_END: IterationEnded,
    EventKind.LM_CALL_START: ModelCallStarted,
    EventKind.LM_CALL_END: ModelCallEnded,
    EventKind.CODE_START: CodeStarted,
    EventKind.CODE_END: CodeEnded,
    EventKind.SUBCALL_START: SubcallStarted,
    EventKind.SUBCALL_END: SubcallEnded,
    EventKind.BATCH_START: BatchStarted,
    EventKind.BATCH_END: BatchEnded,
    EventKind.STRATEGY_ACTION: StrategyActed,
}


@attrs.define(frozen=True)
class RunEvent:
    """One event: ``kind``, the run it belongs to, its span and its parent span, and a typed
    ``payload`` (see ``PAYLOAD_TYPES``). ``data`` holds the payload's fields as a dict: the shape
    observers written before payloads were typed read, and the one to build by hand in tests."""

    kind: EventKind
    run_id: str
    depth: int
    data: dict[str, Any] = attrs.field(factory=dict)
    parent_run_id: str | None = None
    timestamp: float = attrs.field(factory=time.time)
    monotonic: float = attrs.field(factory=time.perf_counter)
    payload: Any = None
    span_id: str = ""
    parent_span_id: str | None = None

    def __attrs_post_init__(self) -> None:
        if not self.data and self.payload is not None:
            fields = attrs.fields(type(self.payload))
            object.__setattr__(self, "data", {f.name: getattr(self.payload, f.name) for f in fields})
