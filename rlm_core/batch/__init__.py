"""Many completions as one job: ``run_batch``/``arun_batch`` (and ``rlm batch``), resumable, with
job-wide limits, an optional sub-call cache, a lock that keeps a second job off the same output, and a
Ray executor for more than one machine."""

from __future__ import annotations

from rlm_core.batch.items import ITEM_SETTINGS, BatchInputError, BatchItem, iter_items
from rlm_core.batch.lock import BatchLockedError, OutputLock, lock_path_for
from rlm_core.batch.results import BatchResult, BatchSummary
from rlm_core.batch.runner import BatchReport, arun_batch, run_batch

__all__ = [
    "ITEM_SETTINGS",
    "BatchInputError",
    "BatchItem",
    "BatchLockedError",
    "BatchReport",
    "BatchResult",
    "BatchSummary",
    "OutputLock",
    "arun_batch",
    "iter_items",
    "lock_path_for",
    "run_batch",
]
