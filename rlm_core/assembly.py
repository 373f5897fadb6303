"""Building an RLM's parts from its arguments: the client tiers, the routing policy, the strategy and
the loggers, each given as a registered name (with its settings) or as an object, and checked so a
bad one fails at ``RLM(...)`` with a message that says what was expected."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rlm_core.errors import ConfigurationError
from rlm_core.guidance.strategy import Strategy
from rlm_core.loggers.base import RunLogger
from rlm_core.plugins.registry import PluginRegistry
from rlm_core.plugins.signatures import factory_parameters
from rlm_core.routing import ClientSet, RoutingPolicy


def _make_client(registry: PluginRegistry, backend: str | Any, kwargs: dict[str, Any]) -> tuple[str, Any]:
    if not isinstance(backend, str):
        if not hasattr(backend, "complete") and not hasattr(backend, "acomplete"):
            raise ConfigurationError(f"backend {backend!r} is neither a registered name nor an LM client")
        return type(backend).__name__, backend
    return backend, registry.create("clients", backend, **kwargs)


def build_clients(
    registry: PluginRegistry,
    backend: str | Any,
    backend_kwargs: dict[str, Any],
    other_backends: list[str | Any],
    other_kwargs: list[dict[str, Any]],
) -> ClientSet:
    clients: dict[str, Any] = {}
    backends: dict[str, str] = {}
    seen: dict[tuple[str, str], str] = {}
    tiers: list[str] = []
    for spec, kwargs in [(backend, backend_kwargs), *zip(other_backends, other_kwargs, strict=False)]:
        backend_name, client = _make_client(registry, spec, kwargs)
        model = str(getattr(client, "model_name", "") or backend_name)
        identity = (
            backend_name,
            repr(sorted(kwargs.items())) if isinstance(spec, str) else str(id(spec)),
        )
        if identity in seen:  # the same backend and settings twice: one client serves both tiers
            tiers.append(seen[identity])
            continue
        name = model if model not in clients else f"{backend_name}:{model}"
        suffix = 2
        while name in clients:
            name, suffix = f"{backend_name}:{model}#{suffix}", suffix + 1
        clients[name] = client
        backends[name] = backend_name
        seen[identity] = name
        tiers.append(name)
    return ClientSet(clients=clients, tiers=tiers, backends=backends)


def build_policy(registry: PluginRegistry, routing: str | RoutingPolicy | None) -> RoutingPolicy:
    if routing is None:
        routing = "tiered"
    policy = registry.create("routing_policies", routing) if isinstance(routing, str) else routing
    if not callable(getattr(policy, "select", None)):
        raise ConfigurationError(f"routing policy {policy!r} has no select(request, clients) method")
    return policy


def build_strategy(
    registry: PluginRegistry, spec: str | Strategy | None, kwargs: dict[str, Any], root_client: Any
) -> Strategy | None:
    """``"auto"``: the strategy the root client offers (its ``default_strategy``), if any;
    None or ``"none"``: no strategy; a name: the registered one; or a Strategy object."""
    if spec == "auto":
        offered = getattr(root_client, "default_strategy", None)
        if not offered:
            if kwargs:
                raise ConfigurationError(
                    "strategy_kwargs were given but no strategy is used (the root client offers "
                    "none); name one: RLM(strategy='name', strategy_kwargs=...)"
                )
            return None
        spec = str(offered)
    if spec is None or spec == "none":
        if kwargs:
            raise ConfigurationError("strategy_kwargs were given with strategy=None; drop one of them")
        return None
    if isinstance(spec, str):
        built: Strategy = registry.create("strategies", spec, **kwargs)
    else:
        if kwargs:
            raise ConfigurationError(
                "strategy_kwargs apply to a strategy given by name; configure the object you passed instead"
            )
        built = spec
    missing = [m for m in ("system_prompt", "on_start", "on_turn") if not callable(getattr(built, m, None))]
    if missing or not isinstance(getattr(built, "name", None), str):
        raise ConfigurationError(
            f"strategy {built!r} is not a Strategy: it needs a str name and the methods "
            "system_prompt, on_start and on_turn (subclass rlm_core.guidance.strategy.BaseStrategy)"
        )
    return built


def build_loggers(
    registry: PluginRegistry, logger: RunLogger | str | Sequence[RunLogger | str] | None, verbose: bool
) -> list[RunLogger]:
    """One logger, a name (``"jsonl:./logs"``: a name and its main setting), or a list of these."""
    specs: list[Any] = (
        [] if logger is None else list(logger) if isinstance(logger, (list, tuple)) else [logger]
    )
    loggers: list[RunLogger] = []
    for spec in specs:
        if isinstance(spec, str):
            name, settings = logger_settings(spec, registry)
            loggers.append(registry.create("loggers", name, **settings))
        else:
            if not callable(getattr(spec, "on_event", None)):
                raise ConfigurationError(f"logger {spec!r} has no on_event(event) method")
            loggers.append(spec)
    if verbose:
        loggers.append(registry.create("loggers", "console"))
    return loggers


def logger_settings(spec: str, registry: PluginRegistry) -> tuple[str, dict[str, Any]]:
    """``"jsonl:./logs"`` -> ``("jsonl", {"log_dir": "./logs"})``: a string logger takes its one
    main setting after a colon (the first setting its factory requires, else its first setting);
    ``"console"`` alone takes none."""
    name, colon, value = spec.partition(":")
    if not colon:
        return name, {}
    parameters = factory_parameters(registry.get("loggers", name).factory)
    if parameters is None or not parameters.names:
        raise ConfigurationError(
            f"logger {name!r} takes no setting after ':' (got logger={spec!r}); pass logger={name!r} "
            "or a logger object"
        )
    first = parameters.required[0] if parameters.required else parameters.names[0]
    return name, {first: value}
