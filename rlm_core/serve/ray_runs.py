"""``rlm serve --ray``: the completions run on a Ray cluster while the HTTP front stays thin.

The front keeps everything a request is judged by (keys, limits, the per-key reservations in SQLite,
each profile's limits); a few async worker actors hold each profile's RLM and run the completions,
many at once on their own event loops. A client that leaves cancels the front's task, which cancels
the actor's task: the run ends there as it would in the front (sub-calls stopped, sandbox closed,
the log's last line ``stop_reason="cancelled"``), and the worker keeps the partial result, which
the front fetches once the cancelled task has ended. So a cancelled completion is charged what it
spent, to the token, as in one process, and the key's ceilings hold. Ray is imported only here.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Mapping
from typing import Any

from rlm_core.errors import ConfigurationError
from rlm_core.ray_cluster import connect
from rlm_core.redact import redact_text
from rlm_core.serve.config import Profile
from rlm_core.serve.errors import WorkerFailed
from rlm_core.types import RLMChatCompletion

# Each worker runs this many completions at once (they spend their time waiting on models).
COMPLETIONS_PER_WORKER = 64


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigurationError("rlm serve --ray needs Ray: pip install 'rlm-core[ray]'") from exc
    return ray


class _ServeWorker:
    """A Ray actor: each profile's RLM, built on first use, and the partial results of cancelled
    completions until the front takes them."""

    def __init__(self, profiles: dict[str, Profile]) -> None:
        self.profiles = profiles
        self.built: dict[str, Any] = {}
        self.cancelled: dict[str, RLMChatCompletion | None] = {}

    def _profile(self, name: str) -> Any:
        from rlm_core.serve.runs import ProfileRLM

        if name not in self.built:
            self.built[name] = ProfileRLM(self.profiles[name])
        return self.built[name]

    async def complete(
        self,
        request_id: str,
        profile: str,
        prompt: Any,
        root_prompt: str | None,
        overrides: Mapping[str, Any],
        tokens: int | None,
        usd: float | None,
        labels: dict[str, Any],
    ) -> RLMChatCompletion:
        from rlm_core.serve.runs import capture_result

        rlm = self._profile(profile).for_request(overrides, tokens, usd)
        with capture_result() as slot:
            try:
                result: RLMChatCompletion = await rlm.acompletion(prompt, root_prompt, labels=labels)
                return result
            except asyncio.CancelledError:
                partial = slot.result
                if partial is not None and partial.log_path is None:  # only finished runs are given one
                    partial.log_path = self._profile(profile).log_path(partial.run_id)
                self.cancelled[request_id] = partial  # kept before the cancellation goes on
                raise

    async def take_cancelled(self, request_id: str) -> RLMChatCompletion | None:
        """The partial result of a cancelled completion (None if it had not started its run)."""
        return self.cancelled.pop(request_id, None)

    async def pid(self) -> int:
        import os

        return os.getpid()

    async def close(self) -> None:
        for profile in self.built.values():
            with contextlib.suppress(Exception):
                await profile.rlm.aclose()


class RayCompletions:
    """Runs completions on worker actors, round-robin. ``address`` is a cluster's (``auto``,
    ``ray://host:10001``); None starts a local cluster for this server alone, on this machine."""

    def __init__(self, profiles: dict[str, Profile], address: str | None = None, workers: int | None = None):
        ray = self.ray = _import_ray()
        try:
            ray.cloudpickle.dumps(profiles)
        except Exception as exc:
            raise ConfigurationError(
                f"the profiles cannot be sent to Ray workers ({type(exc).__name__}: {exc}); give backend "
                "names and plain settings, not objects"
            ) from exc
        self._connected_here = connect(ray, address)
        count = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor = ray.remote(num_cpus=0)(_ServeWorker).options(max_concurrency=COMPLETIONS_PER_WORKER)
        self.workers = [actor.remote(profiles) for _ in range(count)]
        self._next = itertools.cycle(self.workers)

    async def complete(
        self,
        profile: str,
        prompt: Any,
        root_prompt: str | None,
        overrides: Mapping[str, Any],
        tokens: int | None,
        usd: float | None,
        slot: Any,
        labels: dict[str, Any],
    ) -> RLMChatCompletion:
        """One completion on a worker. Cancelled, it cancels the worker's task, waits for that to end
        and puts the run's partial result in ``slot`` before the cancellation goes on."""
        worker = next(self._next)
        request_id = uuid.uuid4().hex
        ref = worker.complete.remote(
            request_id, profile, prompt, root_prompt, dict(overrides), tokens, usd, labels
        )
        try:
            result: RLMChatCompletion = await ref
            return result
        except asyncio.CancelledError:
            await asyncio.shield(self._collect(worker, ref, request_id, slot))
            raise
        except Exception as exc:  # RayTaskError (the worker raised), RayActorError (it died)
            cause = getattr(exc, "cause", None) or exc
            raise WorkerFailed(f"{type(cause).__name__}: {redact_text(str(cause))[:400]}") from exc

    async def _collect(self, worker: Any, ref: Any, request_id: str, slot: Any) -> None:
        self.ray.cancel(ref)
        with contextlib.suppress(Exception):  # TaskCancelledError, or the result if it won the race
            finished = await ref
            if isinstance(finished, RLMChatCompletion):
                slot.result = finished
        partial = await worker.take_cancelled.remote(request_id)
        if partial is not None:
            slot.result = partial

    async def worker_pids(self) -> list[int]:
        """Process ids of the worker actors (for diagnostics and fault tests)."""
        return list(await asyncio.gather(*(worker.pid.remote() for worker in self.workers)))

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.gather(*(worker.close.remote() for worker in self.workers))
        for worker in self.workers:
            with contextlib.suppress(Exception):
                self.ray.kill(worker)
        if self._connected_here:
            self.ray.shutdown()
