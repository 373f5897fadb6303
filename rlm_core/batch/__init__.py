"""Many completions as one job: ``run_batch``/``arun_batch`` (and ``rlm batch``), resumable, with
job-wide limits, an optional sub-call cache, and a Ray executor for more than one machine."""

from __future__ import annotations

from rlm_core.batch.items import ITEM_SETTINGS, BatchInputError, BatchItem, iter_items
from rlm_core.batch.results import BatchResult, BatchSummary
from rlm_core.batch.runner import BatchReport, arun_batch, run_batch

__all__ = [
    "ITEM_SETTINGS",
    "BatchInputError",
    "BatchItem",
    "BatchReport",
    "BatchResult",
    "BatchSummary",
    "arun_batch",
    "iter_items",
    "run_batch",
]
