"""Running a batch on a Ray cluster: worker actors run many items each on their own event loop, and
one ledger actor holds the job's token and cost count and its model-call limit. Ray is imported only
here, so it stays an optional extra (``rlm-core[ray]``)."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from rlm_core.batch.items import BatchInputError, BatchItem
from rlm_core.batch.ledger import JobLedger, LedgerState
from rlm_core.batch.results import BatchResult
from rlm_core.ray_cluster import connect

# A killed worker is restarted and its items in flight are resubmitted to it by Ray; the driver
# writes each item's result once, when its reference resolves, so a retry never writes twice.
WORKER_RESTARTS = 3


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise BatchInputError(
            "executor='ray' (rlm batch --ray) needs Ray: pip install 'rlm-core[ray]'"
        ) from exc
    return ray


class _LedgerService:
    """The job's ledger as a Ray actor (async: the model-call limit waits without blocking it)."""

    def __init__(self, ledger: JobLedger, max_model_calls: int | None) -> None:
        self.ledger = ledger
        self.limit = asyncio.Semaphore(max_model_calls) if max_model_calls else None

    async def acquire(self) -> None:
        if self.limit is not None:
            await self.limit.acquire()

    async def release(self) -> None:
        if self.limit is not None:
            self.limit.release()

    async def record_call(self, tokens: int, cost: float | None) -> None:
        self.ledger.record_call(tokens, cost)

    async def record_item(self, tokens: int, cost: float | None) -> LedgerState:
        self.ledger.record_item(tokens, cost)
        return self.ledger.state()

    async def refusal(self, in_flight: int) -> str | None:
        return self.ledger.refusal(in_flight)


class _ActorLimit:
    """The job-wide model-call limit, held in the ledger actor, as an async context manager."""

    def __init__(self, ledger: Any) -> None:
        self.ledger = ledger

    async def __aenter__(self) -> None:
        await self.ledger.acquire.remote()

    async def __aexit__(self, *exc: object) -> None:
        self.ledger.release.remote()


class _BatchWorker:
    """A Ray actor holding one RLM pool (built by ``factory`` from picklable ``rlm_kwargs``) and
    running items on its event loop, many at once."""

    def __init__(
        self,
        rlm_kwargs: dict[str, Any],
        factory: Any,
        ledger: Any,
        log_dir: str | None,
        cache_path: str | None,
    ) -> None:
        self.rlm_kwargs = dict(rlm_kwargs)
        self.factory = factory
        if log_dir is not None:
            from rlm_core.loggers.jsonl import RLMLogger

            self.rlm_kwargs["logger"] = RLMLogger(log_dir)
        self.ledger = ledger
        self.cache_path = cache_path
        self.pool: Any = None
        self.hits: defaultdict[str, int] = defaultdict(int)

    def _start(self) -> None:
        # Built on the actor's own event loop, the first time an item arrives.
        from rlm_core.batch.cache import SubCallCache
        from rlm_core.batch.execute import RLMPool
        from rlm_core.batch.job_client import JobClient

        cache = SubCallCache(self.cache_path) if self.cache_path else None
        limit = _ActorLimit(self.ledger)

        def on_usage(request: Any, response: Any) -> None:
            self.ledger.record_call.remote(response.usage.total_tokens, response.cost)
            if response.cached:
                self.hits[request.run_id] += 1

        self.pool = RLMPool(
            lambda client: JobClient(client, limit=limit, on_usage=on_usage, cache=cache),
            rlm_kwargs=self.rlm_kwargs,
            factory=self.factory,
        )

    async def run(self, item: BatchItem, fingerprint: str) -> BatchResult:
        from rlm_core.batch.execute import execute_item

        if self.pool is None:
            self._start()
        return await execute_item(item, fingerprint, self.pool, lambda run_id: self.hits.pop(run_id, 0))

    async def pid(self) -> int:
        import os

        return os.getpid()

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.aclose()


class RayExecutor:
    """Items as method calls on a few async worker actors, round-robin; a worker takes up to its
    share of ``max_concurrent`` items at once, so a cluster needs no process per item."""

    def __init__(
        self,
        options: Any,
        ledger: JobLedger,
        rlm_kwargs: Any,
        factory: Any,
        address: str | None = None,
        log_dir: str | Path | None = None,
        workers: int | None = None,
    ) -> None:
        ray = self.ray = _import_ray()
        try:
            ray.cloudpickle.dumps(dict(rlm_kwargs))
        except Exception as exc:
            raise BatchInputError(
                f"rlm_kwargs cannot be sent to Ray workers ({type(exc).__name__}: {exc}); give backend names "
                "and plain settings, not client or logger objects (use log_dir= for logs)"
            ) from exc
        try:
            ray.cloudpickle.dumps(factory)
        except Exception as exc:
            raise BatchInputError(
                f"rlm_factory cannot be sent to Ray workers ({type(exc).__name__}: {exc}); give a class "
                "or a module-level function"
            ) from exc
        self._connected_here = connect(ray, address)  # None: a local cluster for this job alone
        count = workers or max(1, min(options.max_concurrent, int(ray.cluster_resources().get("CPU", 1))))
        per_worker = math.ceil(options.max_concurrent / count)
        ledger_actor = ray.remote(num_cpus=0)(_LedgerService)
        self.ledger = ledger_actor.remote(ledger, options.max_model_calls)
        worker_actor = ray.remote(num_cpus=0, max_restarts=WORKER_RESTARTS, max_task_retries=WORKER_RESTARTS)(
            _BatchWorker
        ).options(max_concurrency=per_worker)
        kwargs = dict(rlm_kwargs)
        self.workers = [
            worker_actor.remote(
                kwargs, factory, self.ledger, None if log_dir is None else str(log_dir), options.cache_path
            )
            for _ in range(count)
        ]
        self._next = itertools.cycle(self.workers)

    async def refusal(self, in_flight: int) -> str | None:
        result: str | None = await self.ledger.refusal.remote(in_flight)
        return result

    async def run(self, item: BatchItem, fingerprint: str) -> BatchResult:
        result: BatchResult = await next(self._next).run.remote(item, fingerprint)
        return result

    async def finished(self, result: BatchResult) -> LedgerState:
        state: LedgerState = await self.ledger.record_item.remote(result.tokens, result.cost)
        return state

    async def worker_pids(self) -> list[int]:
        """Process ids of the worker actors (for diagnostics and fault tests)."""
        return list(await asyncio.gather(*(worker.pid.remote() for worker in self.workers)))

    async def aclose(self) -> None:
        try:
            await asyncio.gather(*(worker.close.remote() for worker in self.workers), return_exceptions=True)
        finally:
            for actor in [*self.workers, self.ledger]:
                self.ray.kill(actor)
            if self._connected_here:  # stops a cluster started here; only disconnects from another
                self.ray.shutdown()
