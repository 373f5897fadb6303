"""The plugin contract: pluggy hook specifications of the ``rlm`` project.

A plugin is a module (or object) with ``@rlm_core.hookimpl`` functions named like the specs below,
registered through the entry point group ``rlm``::

    [project.entry-points.rlm]
    modal = "rlm_modal"

Registration hooks receive a ``register`` callback owned by the core, so it can grow keyword
arguments later without breaking plugins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    from rlm_core.events import RunEvent

PROJECT_NAME = "rlm"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class Register(Protocol):
    """The callback handed to every ``rlm_register_*`` hook."""

    def __call__(
        self, name: str, factory: Any, *, replace: bool = False, hint: str | None = None
    ) -> None: ...


@hookspec
def rlm_register_clients(register: Register) -> None:
    """Register language-model clients.

    Called once, the first time the core looks up a client by backend name.

    :param register: call ``register(name, factory)`` for each backend this plugin provides.
        ``factory(**backend_kwargs)`` must return an ``rlm_core.LMClient``. Import the provider
        SDK inside the factory, never at module import. Pass ``replace=True`` to override a
        name another plugin registered.
    """


@hookspec
def rlm_register_environments(register: Register) -> None:
    """Register code-execution environments.

    Called once, the first time the core looks up an environment by name.

    :param register: call ``register(name, factory)``; ``factory(**environment_kwargs)`` must
        return an ``rlm_core.Environment``. A sandbox plugin usually returns
        ``rlm_core.environments.SandboxEnvironment`` over its own transport.
    """


@hookspec
def rlm_register_routing_policies(register: Register) -> None:
    """Register routing policies, which pick the client for each model call.

    :param register: call ``register(name, factory)``; ``factory(**kwargs)`` must return an
        object with ``select(request, clients)`` (see ``rlm_core.routing.RoutingPolicy``).
    """


@hookspec
def rlm_register_loggers(register: Register) -> None:
    """Register run loggers (trajectory writers, tracers).

    :param register: call ``register(name, factory)``; ``factory(**kwargs)`` must return an
        ``rlm_core.RunLogger`` (``on_event(event)`` and ``close()``).
    """


@hookspec
def rlm_register_strategies(register: Register) -> None:
    """Register strategies: help for a run's root model, given as typed, logged actions.

    Called once, the first time the core looks up a strategy by name (``RLM(strategy="name")``, or
    the name a client offers through its ``default_strategy`` attribute).

    :param register: call ``register(name, factory)``; ``factory(**strategy_kwargs)`` must return
        an ``rlm_core.guidance.strategy.Strategy`` (``name``, ``system_prompt(view)``,
        ``on_start(view)``, ``on_turn(view)``). Its actions (tell, run code, accept an answer, ask
        for the final answer, cap a call) are logged under its name; it can never refuse or rewrite
        an answer the model gave.
    """


@hookspec
def rlm_on_event(event: RunEvent) -> None:
    """Observe every run event: run, iteration, LM call, code execution and sub-call start/end.

    Called synchronously on the event loop for each event of every run in this process, so keep it
    quick. It may not steer the run: an observer that raises is reported once and then ignored.

    :param event: an ``rlm_core.events.RunEvent`` with ``kind``, ``run_id``, ``depth``,
        ``timestamp`` and kind-specific ``data``.
    """


@hookspec
def rlm_cleanup_sandboxes(include_live: bool, dry_run: bool) -> list[dict[str, Any]]:
    """Find (and unless ``dry_run``, remove) sandboxes that rlm-core processes left behind.

    Called by ``rlm cleanup``; every sandbox plugin answers (not ``firstresult``), each call isolated:
    an implementation that raises is reported under its plugin's name and the others still run. Find
    your sandboxes by the labels, tags or names carrying the owner that your transport gave them.

    :param include_live: False: only sandboxes whose owner process is gone (owner host is this
        machine and its pid is dead). True: every rlm-core sandbox this plugin can see, also those
        of live processes and other hosts (it stops their runs).
    :param dry_run: list what would be removed; remove nothing.
    :return: one dict per sandbox acted on (or that would be): ``{"kind": "docker", "id": ...,
        "run_id": ..., "owner_pid": ..., "owner_host": ..., "removed": bool}``; ``kind`` names
        the sandbox service and groups the output. ``removed`` is False in a dry run or when the
        removal failed (then add ``"error"``). A plugin that cannot reach its service returns
        one entry ``{"kind": ..., "error": "what failed and how to fix it"}`` rather than raising;
        a plugin with nothing configured (no engine, no credentials) returns ``[]``.
    """
    raise NotImplementedError  # a specification: pluggy calls the plugins' implementations, never this


@hookspec(firstresult=True)
def rlm_default_backend() -> tuple[str, dict[str, Any]] | None:
    """Offer a backend for when none is named and no provider API key is set.

    Called by ``RLM(backend=None)`` and ``rlm run`` after explicit arguments and provider keys in
    the environment found nothing. The first plugin that returns an offer wins (``firstresult``),
    so return None unless you can really serve (e.g. your model files are installed). Keep it cheap:
    check metadata or files, start nothing.

    :return: ``(backend_name, backend_kwargs)`` or ``(backend_name, backend_kwargs, reason)``, where
        ``backend_name`` is a client this plugin registered and ``reason`` one line for people
        (``rlm run --verbose`` shows it); or None. To say what a user could install to make your
        offer possible, pass ``hint=`` when you register the client: errors show it.
    """
