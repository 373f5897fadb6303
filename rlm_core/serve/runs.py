"""Running the completions of a server: one RLM per profile, a request's lower limits, per-key
reservations settled from the run's own ledger, and cancellation (a client that leaves, a server
that stops) that still charges and logs what the run spent.

A cancelled ``acompletion`` ends its run (sub-calls stopped, sandbox closed, the log's last line
saying ``stop_reason="cancelled"`` with the partial answer) and raises ``CancelledError`` without a
result; the run's last event carries it, so each completion's task catches that event through a
context variable and the request still gets the partial answer and its usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from rlm_core.config import RLMConfig
from rlm_core.errors import RLMError
from rlm_core.events import EventKind, RunEnded, RunEvent
from rlm_core.redact import redact_text
from rlm_core.serve.config import Profile
from rlm_core.serve.errors import ApiError, WorkerFailed
from rlm_core.serve.limits import Limiter, Refusal, Reservation
from rlm_core.types import RLMChatCompletion

log = logging.getLogger("rlm.serve")


@attrs.define
class _Slot:
    result: RLMChatCompletion | None = None


_current: contextvars.ContextVar[_Slot | None] = contextvars.ContextVar("rlm_serve_slot", default=None)


def served_labels(key_name: str, profile: str) -> dict[str, Any]:
    """What a served run's log says of its request (``RunMetadata.extra``; the viewer shows it):
    the profile and the name of the caller's API key (as ``caller``: a field named like a key
    would be redacted, and the key itself is never written)."""
    return {"served": {"profile": profile, "caller": key_name}}


@contextlib.contextmanager
def capture_result() -> Iterator[_Slot]:
    """A slot that ``ResultCapture`` fills with the result of the top-level run this task starts
    inside the block (a cancelled run's partial result included)."""
    slot = _Slot()
    token = _current.set(slot)
    try:
        yield slot
    finally:
        _current.reset(token)


class ResultCapture:
    """A logger on every profile's RLM: hands a top-level run's last event to the completion that
    started it (the event is emitted in that completion's task, so its context says whose it is)."""

    def on_event(self, event: RunEvent) -> None:
        if event.kind is EventKind.RUN_END and event.depth == 0 and isinstance(event.payload, RunEnded):
            slot = _current.get()
            if slot is not None and slot.result is None:
                slot.result = event.payload.result

    def close(self) -> None:
        return None


@attrs.define
class Outcome:
    """How a completion ended: its result (None if it was cancelled before its run started), and
    why it was cancelled, if it was."""

    result: RLMChatCompletion | None
    log_path: str | None
    cancelled: str | None = None  # "disconnect" | "shutdown"
    # Why the completion failed outside its run, and the error code for the client: its sandbox
    # could not start ("completion_failed"), or its Ray worker died ("worker_failed").
    failed: str | None = None
    failed_code: str = "completion_failed"


class ProfileRLM:
    """A profile's RLM, built once and shared by its requests (``acompletion`` runs concurrently)."""

    def __init__(self, profile: Profile) -> None:
        from rlm_core.rlm import RLM

        self.profile = profile
        kwargs = dict(profile.rlm_kwargs)
        spec = kwargs.pop("logger", None)
        loggers = [] if spec is None else list(spec) if isinstance(spec, list) else [spec]
        self.rlm = RLM(**kwargs, logger=[*loggers, ResultCapture()], verbose=False)
        self.limits: RLMConfig = self.rlm.config
        self.priced = all(getattr(c, "price", None) is not None for c in self.rlm.clients.clients.values())

    def for_request(self, overrides: Mapping[str, Any], tokens: int | None, usd: float | None) -> Any:
        """The RLM with a request's limits: what it asked for (only lower than the profile's), with
        its token budget cut to ``tokens`` and its cost to ``usd`` (the key's reservation). A shallow
        copy: clients, environment settings and loggers stay shared."""
        limits = dict(self.validated(overrides))
        if tokens is not None:
            root = limits.get("max_root_tokens", self.limits.max_root_tokens)
            sub = limits.get("max_sub_tokens", self.limits.max_sub_tokens)
            if root + sub > tokens:
                root_share = max(50, min(tokens - 50, tokens * root // (root + sub)))
                limits["max_root_tokens"], limits["max_sub_tokens"] = root_share, tokens - root_share
        if usd is not None:
            limits["max_cost"] = min(usd, limits.get("max_cost") or usd)
        if not limits:
            return self.rlm
        clone = copy.copy(self.rlm)
        clone.config = attrs.evolve(self.rlm.config, **limits)
        clone.settings = attrs.evolve(self.rlm.settings, **limits)
        return clone

    def validated(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """A request's limits, checked by RLMConfig and against the profile's (never above them)."""
        try:
            attrs.evolve(self.limits, **overrides)
        except Exception as exc:  # ConfigurationError, TypeError: a wrong type or value
            raise ApiError(400, f"rlm: {exc}", param="rlm") from exc
        for name, value in overrides.items():
            ceiling = getattr(self.limits, name)
            if ceiling is not None and value is not None and value > ceiling:
                raise ApiError(
                    400,
                    f"rlm.{name}={value} is above the profile's limit ({ceiling}); a request may only lower it",
                    param=f"rlm.{name}",
                )
            if ceiling is not None and value is None:
                raise ApiError(
                    400, f"rlm.{name} cannot lift the profile's limit ({ceiling})", param=f"rlm.{name}"
                )
        return dict(overrides)

    def wanted(self, overrides: Mapping[str, Any]) -> tuple[int, float | None]:
        """What a completion may spend at most: tokens of both tiers and its cost limit."""
        root = overrides.get("max_root_tokens", self.limits.max_root_tokens)
        sub = overrides.get("max_sub_tokens", self.limits.max_sub_tokens)
        cost = overrides.get("max_cost", self.limits.max_cost)
        return int(root + sub), cost

    def log_path(self, run_id: str) -> str | None:
        for logger in self.rlm.loggers:
            path_of = getattr(logger, "path_of", None)
            path = path_of(run_id) if path_of is not None and run_id else None
            if path:
                return str(path)
        return None


class Completions:
    """The completions in flight in this process, and their limits ledger."""

    def __init__(self, profiles: dict[str, ProfileRLM], limiter: Limiter, remote: Any = None) -> None:
        self.profiles = profiles
        self.limiter = limiter
        self.remote = remote  # a RayCompletions (rlm serve --ray): the runs happen on its workers
        self._running: dict[asyncio.Task[Outcome], list[str]] = {}
        self.stopping = False

    def __len__(self) -> int:
        return len(self._running)

    async def admit(
        self, key_name: str, key_limits: Any, profile: ProfileRLM, overrides: Mapping[str, Any]
    ) -> Reservation:
        profile.validated(overrides)
        tokens, cost = profile.wanted(overrides)
        if key_limits.usd_per_day is not None and not profile.priced:
            raise ApiError(
                400,
                f"profile {profile.profile.name!r} has models without a price, and this key has a daily "
                "cost ceiling that needs one; give each model a price in the profile",
                code="model_not_priced",
            )
        admitted = await self.limiter.admit(key_name, key_limits, tokens, cost)
        if isinstance(admitted, Refusal):
            raise ApiError(
                429,
                admitted.reason,
                "rate_limit_error" if admitted.code == "concurrency_limit_exceeded" else "insufficient_quota",
                code=admitted.code,
                headers={"Retry-After": str(admitted.retry_after)},
            )
        return admitted

    def start(
        self,
        profile: ProfileRLM,
        prompt: Any,
        root_prompt: str | None,
        overrides: Mapping[str, Any],
        reservation: Reservation,
    ) -> asyncio.Task[Outcome]:
        """Start a completion as its own task (which settles the reservation, however it ends)."""
        slot = _Slot()
        context = contextvars.copy_context()
        context.run(_current.set, slot)
        reason: list[str] = []
        coro = self._complete(profile, prompt, root_prompt, overrides, reservation, slot, reason)
        task = asyncio.get_running_loop().create_task(coro, context=context)
        self._running[task] = reason
        task.add_done_callback(lambda done: self._running.pop(done, None))
        return task

    def cancel(self, task: asyncio.Task[Outcome], reason: str) -> None:
        reasons = self._running.get(task)
        if reasons is not None and not task.done():
            reasons.append(reason)
            task.cancel()

    async def _complete(
        self,
        profile: ProfileRLM,
        prompt: Any,
        root_prompt: str | None,
        overrides: Mapping[str, Any],
        reservation: Reservation,
        slot: _Slot,
        reason: list[str],
    ) -> Outcome:
        result: RLMChatCompletion | None = None
        cancelled: str | None = None
        failed: str | None = None
        failed_code = "completion_failed"
        try:
            labels = served_labels(reservation.key, profile.profile.name)
            if self.remote is None:
                rlm = profile.for_request(overrides, reservation.tokens, reservation.usd)
                result = await rlm.acompletion(prompt, root_prompt, labels=labels)
            else:  # the worker applies the same limits to its own copy of the profile's RLM
                result = await self.remote.complete(
                    profile.profile.name,
                    prompt,
                    root_prompt,
                    overrides,
                    reservation.tokens,
                    reservation.usd,
                    slot,
                    labels,
                )
        except asyncio.CancelledError:
            cancelled = reason[0] if reason else "shutdown"
            result = slot.result
        except WorkerFailed as exc:
            failed, failed_code = str(exc), "worker_failed"
        except RLMError as exc:  # raised, not returned: the run's sandbox could not start
            failed = f"{type(exc).__name__}: {redact_text(str(exc))[:600]}"
        finally:
            ended = result or slot.result
            spent = ended.usage_summary.total if ended is not None else None
            tokens = spent.total_tokens if spent is not None else 0
            usd = (spent.cost or 0.0) if spent is not None else 0.0
            if failed_code == "worker_failed":  # spent is not known: charge the reservation, so ceilings hold
                tokens, usd = reservation.tokens, reservation.usd or 0.0
            settle = self.limiter.settle(reservation, tokens, usd)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(settle)
        log_path = (result.log_path or profile.log_path(result.run_id)) if result is not None else None
        if cancelled:
            log.info("completion %s cancelled (%s)", result.run_id if result else "-", cancelled)
        if failed:
            log.error("completion failed (%s): %s", failed_code, failed)
        return Outcome(result, log_path, cancelled, failed, failed_code)

    async def cancel_all(self, reason: str) -> None:
        """Cancel every running completion and wait until each has ended (sandboxes closed)."""
        tasks = list(self._running)
        for task in tasks:
            self.cancel(task, reason)
        if tasks:
            await asyncio.wait(tasks)

    async def wait_all(self, timeout: float) -> None:
        tasks = list(self._running)
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def aclose(self) -> None:
        await self.cancel_all("shutdown")
        for profile in self.profiles.values():
            with contextlib.suppress(Exception):
                await profile.rlm.aclose()
        if self.remote is not None:
            await self.remote.aclose()
