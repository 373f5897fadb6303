"""Running one item: pick (or build) the RLM for its settings, read its context, run the completion
and turn the outcome into a ``BatchResult``. Shared by the local and the Ray executors.

The batch layer sits below ``rlm_core.rlm``: it is handed an RLM (or a factory that builds one from
``rlm_kwargs``) and only uses what ``BatchRLM`` names, so it never imports the class itself."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from rlm_core.batch.items import BatchInputError, BatchItem
from rlm_core.batch.job_client import wrap_clients
from rlm_core.batch.results import BatchResult
from rlm_core.batch.store import STATUS_FAILED, STATUS_OK


class BatchRLM(Protocol):
    """What a batch needs of an RLM: its client set (wrapped for the job's limits, ledger and cache),
    a completion, and a close. ``rlm_core.RLM`` is one."""

    clients: Any

    async def acompletion(self, prompt: Any, root_prompt: str | None = None) -> Any: ...
    async def aclose(self) -> None: ...


# Builds an RLM from its construction arguments: ``rlm_core.RLM`` itself, or a subclass.
RLMFactory = Callable[..., BatchRLM]


class RLMPool:
    """One RLM per distinct item settings (usually just one), each with its clients wrapped by
    ``prepare``. A caller's own ``base`` RLM serves items without settings and gets its clients back
    on ``aclose``; RLMs built here are closed there."""

    def __init__(
        self,
        prepare: Callable[[Any], Any],
        base: BatchRLM | None = None,
        rlm_kwargs: Mapping[str, Any] | None = None,
        factory: RLMFactory | None = None,
    ) -> None:
        if base is None and rlm_kwargs is None:
            raise BatchInputError("a batch needs an RLM or rlm_kwargs to build one")
        if factory is None and base is not None:
            factory = type(base)  # items with their own settings get the caller's kind of RLM
        if factory is None:
            raise BatchInputError("a batch built from rlm_kwargs needs a factory (e.g. rlm_core.RLM)")
        self._factory = factory
        self._prepare = prepare
        self._base = base
        self._rlm_kwargs = dict(rlm_kwargs) if rlm_kwargs is not None else None
        self._built: dict[str, BatchRLM] = {}
        self._base_clients: dict[str, Any] | None = None
        if base is not None:
            self._base_clients = wrap_clients(base, prepare)

    def get(self, settings: Mapping[str, Any]) -> BatchRLM:
        if not settings and self._base is not None:
            return self._base
        if self._rlm_kwargs is None:
            raise BatchInputError(
                f"this item sets {sorted(settings)}, but the batch was started from an RLM object whose "
                "construction arguments are unknown; pass rlm_kwargs=... (the RLM(...) arguments) to "
                "let items override them"
            )
        key = json.dumps(dict(settings), sort_keys=True, default=repr)
        rlm = self._built.get(key)
        if rlm is None:
            rlm = self._factory(**{**self._rlm_kwargs, **settings})
            wrap_clients(rlm, self._prepare)
            self._built[key] = rlm
        return rlm

    async def aclose(self) -> None:
        built, self._built = list(self._built.values()), {}
        for rlm in built:
            await rlm.aclose()
        if self._base is not None and self._base_clients is not None:
            self._base.clients.clients.update(self._base_clients)
            self._base_clients = None


def log_path_for(rlm: Any, run_id: str) -> str | None:
    """The trajectory file of a run: JSONL loggers name their files after the run id."""
    pending = list(getattr(rlm, "loggers", []))
    while pending:
        logger = pending.pop()
        pending.extend(getattr(logger, "loggers", []))  # fan-out loggers
        for path in reversed(getattr(logger, "paths", [])):
            if run_id and run_id[:8] in str(path):
                return str(path)
    return None


async def execute_item(
    item: BatchItem,
    fingerprint: str,
    pool: RLMPool,
    cached_calls: Callable[[str], int] | None = None,
) -> BatchResult:
    """Run one item; every failure becomes a failed result with a readable error, never an exception."""
    started = time.perf_counter()
    try:
        if item.problem is not None:
            raise BatchInputError(item.problem)
        rlm = pool.get(item.settings)
        context = await asyncio.to_thread(item.load_context) if item.context_path else item.load_context()
        result = await rlm.acompletion(context, root_prompt=item.question)
    except Exception as exc:  # one item's failure must never sink the job
        return BatchResult(
            id=item.id,
            status=STATUS_FAILED,
            input_hash=fingerprint,
            error=str(exc) if isinstance(exc, BatchInputError) else f"{type(exc).__name__}: {exc}",
            duration=time.perf_counter() - started,
            metadata=item.metadata,
        )
    total = result.usage_summary.total
    return BatchResult(
        id=item.id,
        status=STATUS_OK if result.ok else STATUS_FAILED,
        input_hash=fingerprint,
        response=result.response,
        stop_reason=result.stop_reason.value,
        error=result.error,
        usage=result.usage_summary.to_dict(),
        tokens=total.total_tokens,
        cost=total.cost,
        cached_calls=cached_calls(result.run_id) if cached_calls is not None else 0,
        duration=time.perf_counter() - started,
        iterations=result.iterations,
        log_path=log_path_for(rlm, result.run_id) or result.log_path,
        metadata=item.metadata,
    )
