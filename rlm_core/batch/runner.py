"""The batch job: stream items, skip what an earlier run finished, start at most ``max_concurrent``
completions while the job's ledger allows, write each result as it finishes, then summarise."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sized
from pathlib import Path
from typing import Any, Protocol

import attrs

from rlm_core.batch.cache import SubCallCache
from rlm_core.batch.execute import BatchRLM, RLMFactory, RLMPool, execute_item
from rlm_core.batch.items import BatchInputError, BatchItem, iter_items
from rlm_core.batch.job_client import JobClient
from rlm_core.batch.ledger import JobLedger, LedgerState
from rlm_core.batch.lock import OutputLock
from rlm_core.batch.results import STATUS_NOT_STARTED, BatchResult, BatchSummary
from rlm_core.batch.settings import job_settings_of
from rlm_core.batch.store import ResultStore, is_finished
from rlm_core.types import LMRequest, LMResponse


class Progress(Protocol):
    """What the runner reports while it works (see ``rlm_core.batch.progress``)."""

    def start(self, total: int | None) -> None: ...
    def item_started(self, item_id: str) -> None: ...
    def item_skipped(self, result: BatchResult) -> None: ...
    def item_finished(self, result: BatchResult, ledger: LedgerState) -> None: ...
    def close(self, summary: BatchSummary) -> None: ...


class Executor(Protocol):
    """Runs items and owns the job's ledger (in this process, or as a Ray actor)."""

    async def refusal(self, in_flight: int) -> str | None: ...
    async def run(self, item: BatchItem, fingerprint: str) -> BatchResult: ...
    async def finished(self, result: BatchResult) -> LedgerState: ...
    async def aclose(self) -> None: ...


@attrs.define
class BatchReport:
    """``results`` in input order (or completion order with ``ordered=False``) and the ``summary``."""

    results: list[BatchResult]
    summary: BatchSummary


@attrs.define(frozen=True)
class JobOptions:
    """The job-wide knobs, as the executors need them."""

    max_concurrent: int = 8
    max_model_calls: int | None = None
    max_job_tokens: int | None = None
    max_job_cost: float | None = None
    cache_path: str | None = None


class LocalExecutor:
    """Items as asyncio tasks in this process, sharing one model-call limit, ledger and cache."""

    def __init__(
        self,
        options: JobOptions,
        ledger: JobLedger,
        rlm: BatchRLM | None,
        rlm_kwargs: Any,
        factory: RLMFactory,
    ) -> None:
        self.ledger = ledger
        self._limit = asyncio.Semaphore(options.max_model_calls) if options.max_model_calls else None
        self._cache = SubCallCache(options.cache_path) if options.cache_path else None
        self._hits: defaultdict[str, int] = defaultdict(int)
        self.pool = RLMPool(self._wrap, base=rlm, rlm_kwargs=rlm_kwargs, factory=factory)

    def _wrap(self, client: Any) -> JobClient:
        return JobClient(client, limit=self._limit, on_usage=self._on_usage, cache=self._cache)

    def _on_usage(self, request: LMRequest, response: LMResponse) -> None:
        self.ledger.record_call(response.usage.total_tokens, response.cost)
        if response.cached:
            self._hits[request.run_id] += 1

    async def refusal(self, in_flight: int) -> str | None:
        return self.ledger.refusal(in_flight)

    async def run(self, item: BatchItem, fingerprint: str) -> BatchResult:
        return await execute_item(item, fingerprint, self.pool, lambda run_id: self._hits.pop(run_id, 0))

    async def finished(self, result: BatchResult) -> LedgerState:
        self.ledger.record_item(result.tokens, result.cost)
        return self.ledger.state()

    async def aclose(self) -> None:
        await self.pool.aclose()
        if self._cache is not None:
            self._cache.close()


def _count_items(source: Any, question: str | None) -> int | None:
    """How many items, when that is cheap to know (for the ETA); None for one-pass iterables."""
    if isinstance(source, str | Path):
        path = Path(source)
        if path.is_dir():
            return sum(1 for p in path.rglob("*") if p.is_file())
        with contextlib.suppress(OSError), path.open("rb") as lines:
            return sum(1 for line in lines if line.strip())
        return None
    return len(source) if isinstance(source, Sized) else None


def _factory_for(rlm: BatchRLM | None, rlm_factory: RLMFactory | None) -> RLMFactory | None:
    """What builds the RLMs of items with their own settings (and of Ray workers). The batch layer
    sits below the ``RLM`` facade and never imports it: a caller hands it an RLM or a factory."""
    if rlm_factory is not None:
        return rlm_factory
    return type(rlm) if rlm is not None else None


async def arun_batch(
    items: Iterable[Any] | str | Path,
    output: str | Path | None = None,
    *,
    rlm: BatchRLM | None = None,
    rlm_kwargs: Mapping[str, Any] | None = None,
    rlm_factory: RLMFactory | None = None,
    question: str | None = None,
    max_concurrent: int = 8,
    max_model_calls: int | None = None,
    max_job_tokens: int | None = None,
    max_job_cost: float | None = None,
    retry_failed: bool = False,
    cache: str | Path | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    log_dir: str | Path | None = None,
    progress: Progress | None = None,
    ordered: bool = True,
    keep_results: bool = True,
    on_result: Callable[[BatchResult], None] | None = None,
) -> BatchReport:
    """Run a batch of RLM completions; see docs/batch.md.

    ``items``: a JSONL path, a folder (with ``question``) or an iterable of dicts/``BatchItem``s.
    ``output``: the results JSONL; rerunning with the same file skips finished items.
    ``rlm`` or ``rlm_kwargs``: what runs each item (``rlm_kwargs`` lets items override settings and
    is what Ray workers build their RLMs from); ``rlm_factory`` builds them (default: the class of
    ``rlm``; with ``rlm_kwargs`` alone pass ``rlm_factory=rlm_core.RLM``, a subclass or any callable
    taking the ``RLM(...)`` arguments, which must pickle for Ray). ``max_model_calls`` bounds model calls in flight
    across the whole job. ``log_dir`` gets one trajectory log per item (with ``rlm_kwargs``). ``keep_results=False`` returns no per-item list (for very large jobs).
    """
    if max_concurrent < 1:
        raise BatchInputError(f"max_concurrent must be >= 1, got {max_concurrent}")
    if max_model_calls is not None and max_model_calls < 1:
        raise BatchInputError(f"max_model_calls must be >= 1 or None, got {max_model_calls}")
    if executor not in ("local", "ray"):
        raise BatchInputError(f"executor must be 'local' or 'ray', got {executor!r}")
    if executor == "ray" and rlm_kwargs is None:
        raise BatchInputError(
            "executor='ray' builds an RLM on each worker from rlm_kwargs (backend names and "
            "settings, not client objects); pass rlm_kwargs=..."
        )
    if rlm is None and rlm_factory is None:
        raise BatchInputError(
            "a batch needs an RLM to run its items: pass rlm=RLM(...) (or call RLM(...).batch(items)), "
            "or rlm_kwargs=... with rlm_factory=rlm_core.RLM"
        )
    if log_dir is not None and rlm_kwargs is None:
        raise BatchInputError("log_dir needs rlm_kwargs; an RLM object brings its own logger")
    options = JobOptions(
        max_concurrent=max_concurrent,
        max_model_calls=max_model_calls,
        max_job_tokens=max_job_tokens,
        max_job_cost=max_job_cost,
        cache_path=str(cache) if cache is not None else None,
    )
    source = iter_items(items, question)
    # Taken before the results file is read and held until the job's end, in this process (the Ray
    # driver too): a second job on the same output would run every unfinished item again. Taken
    # here on the loop, not in a thread: it is quick, and a lock won in a thread for a caller that
    # was cancelled meanwhile would stay held.
    with OutputLock(output) if output is not None else contextlib.nullcontext():
        store = ResultStore(output) if output is not None else None
        previous = store.load() if store is not None else {}
        ledger = JobLedger(
            max_job_tokens,
            max_job_cost,
            prior_tokens=sum(int(r.get("tokens") or 0) for r in previous.values()),
            prior_cost=sum(float(r.get("cost") or 0.0) for r in previous.values()),
            prior_items=sum(1 for r in previous.values() if r.get("tokens")),
        )
        job_settings = job_settings_of(rlm_kwargs if rlm_kwargs is not None else rlm)
        factory = _factory_for(rlm, rlm_factory)
        assert factory is not None  # checked above
        if executor == "ray":
            from rlm_core.batch.ray_executor import RayExecutor

            assert rlm_kwargs is not None
            runner: Executor = RayExecutor(
                options, ledger, rlm_kwargs, factory, address=ray_address, log_dir=log_dir
            )
        else:
            if log_dir is not None:
                from rlm_core.loggers.jsonl import RLMLogger

                rlm_kwargs = {**(rlm_kwargs or {}), "logger": RLMLogger(log_dir)}
            runner = LocalExecutor(options, ledger, rlm, rlm_kwargs, factory)
        job = _Job(runner, store, progress, max_concurrent, keep_results, on_result)
        try:
            if progress is not None:
                progress.start(_count_items(items, question))
            await job.run(source, previous, job_settings, retry_failed)
        finally:
            await runner.aclose()
            if store is not None:
                store.close()
            summary = BatchSummary.of(job.summary_results, time.perf_counter() - job.started, job.stopped_by)
            if progress is not None:
                progress.close(summary)  # also when interrupted: the display must not stay live
    results = sorted(job.results, key=lambda pair: pair[0]) if ordered else job.results
    return BatchReport([result for _, result in results] if keep_results else [], summary)


class _Job:
    """The state of one ``arun_batch`` call."""

    def __init__(
        self,
        executor: Executor,
        store: ResultStore | None,
        progress: Progress | None,
        max_concurrent: int,
        keep_results: bool,
        on_result: Callable[[BatchResult], None] | None,
    ) -> None:
        self.executor = executor
        self.store = store
        self.progress = progress
        self.slots = asyncio.Semaphore(max_concurrent)
        self.keep_results = keep_results
        self.on_result = on_result
        self.results: list[tuple[int, BatchResult]] = []
        self.summary_results: list[BatchResult] = []  # slim copies: what the summary needs
        self.in_flight = 0
        self.stopped_by: str | None = None
        self.started = time.perf_counter()

    def _collect(self, index: int, result: BatchResult) -> None:
        if self.keep_results:
            self.results.append((index, result))
        self.summary_results.append(
            attrs.evolve(result, response=None, usage={}, metadata=None) if not self.keep_results else result
        )
        if self.on_result is not None:
            self.on_result(result)

    async def run(
        self,
        source: Iterable[BatchItem],
        previous: dict[str, dict[str, Any]],
        job_settings: Mapping[str, Any],
        retry_failed: bool,
    ) -> None:
        seen: dict[str, int] = {}
        async with asyncio.TaskGroup() as tasks:
            for index, item in enumerate(source):
                if item.id in seen:
                    item = attrs.evolve(
                        item,
                        id=f"{item.id}#{index}",
                        problem=f"duplicate id {item.id!r} (first used by item {seen[item.id]}); "
                        "give every item its own id",
                    )
                seen.setdefault(item.id, index)
                fingerprint = item.fingerprint(job_settings)
                record = previous.get(item.id)
                if record is not None and is_finished(record, fingerprint, retry_failed):
                    self._skip(index, BatchResult.from_record(record))
                    continue
                if self.stopped_by is None:
                    await self.slots.acquire()
                    self.stopped_by = await self.executor.refusal(self.in_flight)
                    if self.stopped_by is None:
                        self.in_flight += 1
                        if self.progress is not None:
                            self.progress.item_started(item.id)
                        tasks.create_task(self._run_one(index, item, fingerprint))
                        continue
                    self.slots.release()
                self._skip(index, BatchResult(item.id, STATUS_NOT_STARTED, fingerprint))

    def _skip(self, index: int, result: BatchResult) -> None:
        self._collect(index, result)
        if self.progress is not None:
            self.progress.item_skipped(result)

    async def _run_one(self, index: int, item: BatchItem, fingerprint: str) -> None:
        try:
            result = await self.executor.run(item, fingerprint)
            if self.store is not None:
                await asyncio.to_thread(self.store.append, result.to_record())
            state = await self.executor.finished(result)
        finally:
            self.in_flight -= 1
            self.slots.release()
        self._collect(index, result)
        if self.progress is not None:
            self.progress.item_finished(result, state)


def run_batch(
    items: Iterable[Any] | str | Path, output: str | Path | None = None, **options: Any
) -> BatchReport:
    """``arun_batch`` from sync code (also inside a running loop, e.g. Jupyter)."""
    from rlm_core.engine.loop_thread import run_sync  # the core's one sync-over-async helper

    return run_sync(arun_batch(items, output, **options))
