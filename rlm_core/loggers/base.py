"""The logger contract: a RunLogger receives every event of the runs it is attached to."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from rlm_core.events import RunEvent


@runtime_checkable
class RunLogger(Protocol):
    """Receives run events in order (children's events included, with their own ``run_id``).

    Loggers observe; they never steer a run. An exception in ``on_event`` is reported once and the
    run goes on.
    """

    def on_event(self, event: RunEvent) -> None: ...

    def close(self) -> None: ...
