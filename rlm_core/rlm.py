"""``RLM``: the public entry point. Configures clients, routing, budgets, environment and loggers, and
runs ``completion()`` / ``acompletion()``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

import attrs

from rlm_core.assembly import build_clients, build_loggers, build_policy, build_strategy
from rlm_core.config import DEFAULTS, RLMConfig, check_no_limit_keys
from rlm_core.engine.broker import Broker
from rlm_core.engine.budget import RunBudget
from rlm_core.engine.emitter import Emitter
from rlm_core.engine.loop_thread import LoopThread, run_sync
from rlm_core.engine.preparing import PreparingEnvironment
from rlm_core.engine.run import Run
from rlm_core.engine.tokens import TokenEstimator
from rlm_core.environments.base import Environment
from rlm_core.errors import ConfigurationError, RLMError
from rlm_core.guidance.strategy import Strategy
from rlm_core.loggers.base import RunLogger
from rlm_core.plugins.registry import get_registry
from rlm_core.routing import RoutingPolicy
from rlm_core.types import RLMChatCompletion, StopReason

T = TypeVar("T")
Init = TypeVar("Init", bound=Callable[..., None])
CONFIG_FIELDS = tuple(field.name for field in attrs.fields(RLMConfig))


def _recording_arguments(init: Init) -> Init:
    """Keep the arguments ``RLM(...)`` was given, as given, in ``init_kwargs``: a batch builds the
    same RLM elsewhere from them (items with their own settings, Ray workers), so
    ``rlm.batch(items, executor="ray")`` needs nothing more."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def recorded(self: Any, *args: Any, **kwargs: Any) -> None:
        arguments = signature.bind(self, *args, **kwargs).arguments
        self.init_kwargs = {name: value for name, value in arguments.items() if name != "self"}
        init(self, *args, **kwargs)

    return cast(Init, recorded)


async def _close_even_if_cancelled(environment: Environment) -> None:
    """Close a run's environment to the end even when the completion is cancelled again meanwhile
    (a second Ctrl-C): a half-closed sandbox would leave its container or process behind."""
    closing = asyncio.ensure_future(environment.close())
    try:
        await asyncio.shield(closing)
    except asyncio.CancelledError:
        await asyncio.wait({closing})
        raise


class _HostForwarder:
    """The environment's host callable; points at whichever run is current (persistent mode)."""

    def __init__(self) -> None:
        self.run: Run | None = None

    async def __call__(self, function: str, args: dict[str, Any]) -> Any:
        if self.run is None:
            raise RLMError("no run is active for this environment")
        return await self.run.host_call(function, args)


class RLM:
    """A Recursive Language Model.

    ``backend``/``backend_kwargs`` configure the root model (``backend=None`` picks one from the
    environment, see ``rlm_core.defaults``); ``other_backends``/``other_backend_kwargs`` the sub-call
    tiers (depth d uses entry d-1, the last one repeating). ``max_root_tokens`` limits the depth-0 calls
    and ``max_sub_tokens`` all deeper calls together, per ``completion()``. The settings' defaults
    and meanings are ``rlm_core.config.RLMConfig``'s.
    """

    init_kwargs: dict[str, Any]  # the arguments as given (see _recording_arguments)

    @_recording_arguments
    def __init__(
        self,
        backend: str | Any | None = None,
        backend_kwargs: Mapping[str, Any] | None = None,
        environment: str = "local",
        environment_kwargs: Mapping[str, Any] | None = None,
        other_backends: Sequence[str | Any] | None = None,
        other_backend_kwargs: Sequence[Mapping[str, Any]] | None = None,
        max_root_tokens: int = DEFAULTS.max_root_tokens,
        max_sub_tokens: int = DEFAULTS.max_sub_tokens,
        max_iterations: int = DEFAULTS.max_iterations,
        max_depth: int = DEFAULTS.max_depth,
        max_timeout: float | None = DEFAULTS.max_timeout,
        routing: str | RoutingPolicy | None = None,
        logger: RunLogger | str | Sequence[RunLogger | str] | None = None,
        verbose: bool = False,
        persistent: bool = DEFAULTS.persistent,
        custom_tools: Mapping[str, Any] | None = None,
        custom_system_prompt: str | None = DEFAULTS.custom_system_prompt,
        max_concurrent_subcalls: int = DEFAULTS.max_concurrent_subcalls,
        max_output_chars: int = DEFAULTS.max_output_chars,
        cell_timeout: float | None = DEFAULTS.cell_timeout,
        compaction_threshold: float = DEFAULTS.compaction_threshold,
        max_cost: float | None = DEFAULTS.max_cost,
        max_llm_calls: int | None = DEFAULTS.max_llm_calls,
        strategy: str | Strategy | None = "auto",
        strategy_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        # Defaults live in RLMConfig alone: what was not given takes them there.
        given = self.init_kwargs
        self.config = RLMConfig(**{name: given[name] for name in CONFIG_FIELDS if name in given})
        backend_kwargs = dict(backend_kwargs or {})
        check_no_limit_keys(backend_kwargs, "backend_kwargs")
        other_backends = list(other_backends or [])
        other_kwargs = [dict(k or {}) for k in (other_backend_kwargs or [])]
        for index, kwargs in enumerate(other_kwargs):
            check_no_limit_keys(kwargs, f"other_backend_kwargs[{index}]")
        if other_kwargs and len(other_kwargs) != len(other_backends):
            raise ConfigurationError(
                f"other_backends has {len(other_backends)} entries but other_backend_kwargs has "
                f"{len(other_kwargs)}; give one kwargs dict per other backend"
            )
        other_kwargs = other_kwargs or [{} for _ in other_backends]

        self._registry = get_registry()
        if backend is None:
            from rlm_core.defaults import resolve_backend

            backend, resolved_kwargs = resolve_backend(None, backend_kwargs)
            backend_kwargs = dict(resolved_kwargs)
        self.backend = backend
        self.backend_kwargs = backend_kwargs
        self.clients = build_clients(self._registry, backend, backend_kwargs, other_backends, other_kwargs)
        from rlm_core.clients.pricing import warm_up

        warm_up()  # the price database loads while the first model call runs
        if max_cost is not None:
            self._check_prices()
        self.policy = build_policy(self._registry, routing)
        self.environment_name = environment
        self.environment_kwargs = dict(environment_kwargs or {})
        # Unknown names and misspelt settings fail now, with a suggestion, not at the first run.
        self._registry.check_kwargs(
            "environments",
            environment,
            self.environment_kwargs,
            f"environment_kwargs of {environment!r}",
            build=True,
        )
        self.loggers = build_loggers(self._registry, logger, verbose)
        self.strategy = build_strategy(
            self._registry, strategy, dict(strategy_kwargs or {}), self.clients.clients[self.clients.tiers[0]]
        )
        self.persistent = persistent
        self.settings = self.config.run_settings(
            backend if isinstance(backend, str) else type(backend).__name__, environment
        )
        self.max_root_tokens = self.config.max_root_tokens
        self.max_sub_tokens = self.config.max_sub_tokens
        self.max_concurrent_subcalls = self.config.max_concurrent_subcalls
        self._estimators: dict[str, TokenEstimator] = {}
        self._persistent_env: Environment | None = None
        self._host = _HostForwarder()
        self._turn = 0
        self._histories: list[list[dict[str, str]]] = []
        self._busy = threading.Lock()
        self._closed = False
        self._loop = LoopThread("rlm-persistent")

    def _check_prices(self) -> None:
        """``max_cost`` needs a price for every model it may be charged for."""
        for name, client in self.clients.clients.items():
            if getattr(client, "price", None) is None:
                raise ConfigurationError(
                    f"max_cost is set but model {name!r} has no known price, so its calls cannot be "
                    "costed; pass one in its settings: backend_kwargs={'price': "
                    "(input_usd_per_mtok, output_usd_per_mtok)} (or other_backend_kwargs[i] for a sub "
                    "model), or drop max_cost"
                )

    # -- construction helpers ------------------------------------------------------------------

    @property
    def root_model(self) -> str:
        return str(getattr(self.clients.clients[self.clients.tiers[0]], "model_name", self.clients.tiers[0]))

    # -- running -------------------------------------------------------------------------------

    async def _new_environment(self) -> Environment:
        env: Environment = self._registry.create(
            "environments", self.environment_name, **self.environment_kwargs
        )
        return env

    def completion(
        self, prompt: Any, root_prompt: str | None = None, *, labels: Mapping[str, Any] | None = None
    ) -> RLMChatCompletion:
        """Run one RLM completion over ``prompt`` (the context: str, list or dict). ``labels``
        (JSON values, e.g. ``{"user": "ana"}``) go into the log's metadata line as ``extra``."""
        if self.persistent:  # the REPL lives across turns, so every turn runs on the same loop
            return self._loop.run(self.acompletion(prompt, root_prompt, labels=labels))
        return run_sync(self.acompletion(prompt, root_prompt, labels=labels))

    async def acompletion(
        self, prompt: Any, root_prompt: str | None = None, *, labels: Mapping[str, Any] | None = None
    ) -> RLMChatCompletion:
        """``completion()``, natively async: many may run concurrently on one loop."""
        if self._closed:
            raise RLMError("this RLM was closed; create a new one")
        _check_labels(labels)
        if self.persistent and not self._busy.acquire(blocking=False):
            raise RLMError("a persistent RLM runs one completion at a time; await the previous one first")
        try:
            return await self._acompletion(prompt, root_prompt, dict(labels or {}))
        finally:
            if self.persistent:
                self._busy.release()

    async def _acompletion(
        self, prompt: Any, root_prompt: str | None, labels: dict[str, Any]
    ) -> RLMChatCompletion:
        emitter = Emitter(self.loggers, self._registry)
        budget = RunBudget(
            self.config.max_root_tokens,
            self.config.max_sub_tokens,
            max_cost=self.config.max_cost,
            max_llm_calls=self.config.max_llm_calls,
        )
        broker = Broker(
            self.clients, self.policy, budget, emitter, self.config.max_concurrent_subcalls, self._estimators
        )
        deadline = time.monotonic() + self.settings.max_timeout if self.settings.max_timeout else None
        host = self._host if self.persistent else _HostForwarder()
        turn = self._turn if self.persistent else 0
        preparing: PreparingEnvironment | None = None
        if self.persistent:
            environment, fresh = await self._environment_for_run(host)
        else:
            # Start the REPL (and load the context) while the root model thinks about its first turn.
            fresh_env = await self._new_environment()
            preparing = PreparingEnvironment(fresh_env, self._prepare(fresh_env, host, turn, prompt))
            environment, fresh = preparing, True
        run = Run(
            broker=broker,
            emitter=emitter,
            settings=self.settings,
            environment=environment,
            environment_factory=self._new_environment,
            context=prompt,
            root_prompt=root_prompt,
            turn=turn,
            deadline=deadline,
            strategy=self.strategy,
            labels=labels,
        )
        host.run = run
        try:
            if preparing is None:
                await environment.load_context(turn, prompt)
            result = await run.run()
        finally:
            host.run = None
            if fresh and not self.persistent:
                await _close_even_if_cancelled(environment)
        if preparing is not None and preparing.failure is not None and result.stop_reason is StopReason.ERROR:
            raise preparing.failure  # the REPL could not start: as before, the caller gets that error
        result.log_path = self._log_path(result.run_id)
        if self.persistent:
            history = [{"role": m.role, "content": m.content, "author": m.author} for m in run.messages]
            await environment.load_history(turn, history)
            self._histories.append(history)
            self._turn += 1
        return result

    async def _prepare(self, environment: Environment, host: _HostForwarder, turn: int, prompt: Any) -> None:
        await environment.start(host, self.settings.custom_tools)
        await environment.load_context(turn, prompt)

    async def _environment_for_run(self, host: _HostForwarder) -> tuple[Environment, bool]:
        if self.persistent and self._persistent_env is not None:
            return self._persistent_env, False
        environment = await self._new_environment()
        await environment.start(host, self.settings.custom_tools)
        if self.persistent:
            self._persistent_env = environment
        return environment, True

    def _log_path(self, run_id: str) -> str | None:
        """The log file of this run (each concurrent completion names its own)."""
        for logger in self.loggers:
            path_of = getattr(logger, "path_of", None)
            path = path_of(run_id) if path_of is not None else None
            if path:
                return str(path)
        return None

    # -- lifetime ------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Release the persistent environment, clients and loggers. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._persistent_env is not None:
            env, self._persistent_env = self._persistent_env, None
            await env.close()
        for client in self.clients.clients.values():
            aclose = getattr(client, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):  # closing must not mask the user's own error
                    await aclose()
        for logger in self.loggers:
            close = getattr(logger, "close", None)
            if close is not None:
                close()

    def close(self) -> None:
        if self._loop.running:
            try:
                self._loop.run(self.aclose())
            finally:
                self._loop.stop()
            return
        run_sync(self.aclose())

    def __enter__(self) -> RLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> RLM:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"RLM(root={self.root_model!r}, tiers={self.clients.tiers!r}, "
            f"environment={self.environment_name!r}, "
            f"persistent={self.persistent})"
        )

    # -- many completions ----------------------------------------------------------------------

    def batch(self, items: Any, **options: Any) -> list[Any]:
        """Run many completions as one job (``rlm_core.batch.arun_batch``): a list of ``BatchResult``
        in input order, or in completion order with ``ordered=False``."""
        return run_sync(self.abatch(items, **options))

    async def abatch(self, items: Any, **options: Any) -> list[Any]:
        """``batch()``, natively async. Items run on this RLM; items with their own settings and
        ``executor="ray"`` get an RLM built from this one's arguments (``init_kwargs``)."""
        from rlm_core.batch.runner import arun_batch

        options.setdefault("rlm_kwargs", self.init_kwargs)
        report = await arun_batch(items, options.pop("output", None), rlm=self, **options)
        return list(report.results)


def _check_labels(labels: Mapping[str, Any] | None) -> None:
    """Labels go into a JSON log line: say so now, not when the logger fails to write them."""
    if labels is None:
        return
    if not isinstance(labels, Mapping) or not all(isinstance(k, str) for k in labels):
        raise ConfigurationError(f"labels must be a dict with str keys, got {type(labels).__name__}")
    try:
        json.dumps(labels)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"labels must hold JSON values (str, numbers, lists, dicts): {exc}") from exc
