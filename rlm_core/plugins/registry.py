"""Plugin discovery and the registries of clients, environments, routing policies and loggers.

Discovery is lazy (first look-up, never at ``import rlm_core``), per entry point and safe: a plugin
that fails to import or raises in a hook is recorded with its error and skipped. Environment:

- ``RLM_PLUGINS=a,b``: load only these entry points (built-ins always load).
- ``RLM_DISABLE_PLUGINS=a,b``: never load these.
- ``RLM_STRICT_PLUGINS=1``: any plugin error is raised instead of recorded.
- ``RLM_TRACE_PLUGINS=1``: print every hook call to stderr (pluggy tracing).

Hooks are called through pluggy, so ``firstresult`` specs and hook wrappers behave as pluggy
documents; each plugin is registered behind an isolating stand-in (``isolation.py``) so a failure
is pinned on its plugin and never stops the others.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any

import attrs
import pluggy

from rlm_core.errors import ConfigurationError, PluginError, UnknownNameError, did_you_mean
from rlm_core.plugins import hookspecs
from rlm_core.plugins.isolation import IsolatedPlugin, current_plugin
from rlm_core.plugins.signatures import Parameters, factory_parameters

ENTRY_POINT_GROUP = "rlm"
BUILTIN_PLUGIN = "rlm_core.plugins.builtins"
KINDS = ("clients", "environments", "routing_policies", "loggers", "strategies")

# Plugins are published as ``rlm-<name>`` by convention: an unknown name suggests that distribution.
DISTRIBUTION_PREFIX = "rlm-"


@attrs.define
class PluginInfo:
    """What ``rlm plugins`` shows for one plugin."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    registered: dict[str, list[str]] = attrs.field(factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define(frozen=True)
class Registration:
    name: str
    factory: Callable[..., Any]
    plugin: str
    # What a user may need to do before this works (e.g. which extra installs a model), shown in
    # errors that name no other way forward.
    hint: str | None = None
    replace: bool = False  # registered with replace=True: wins over a plain registration of the name


@attrs.define(frozen=True)
class HookAnswer:
    """One plugin's answer to a hook called through :meth:`PluginRegistry.call_each`."""

    plugin: str
    value: Any
    error: Exception | None = None


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _strict() -> bool:
    return os.environ.get("RLM_STRICT_PLUGINS", "").lower() in {"1", "true", "yes", "on"}


class PluginRegistry:
    """One plugin manager plus the four name registries it fills.

    Most code uses the process-wide instance from :func:`get_registry`; tests make their own.
    """

    def __init__(self, *, load_entry_points: bool = True) -> None:
        self._load_entry_points = load_entry_points
        self._lock = threading.RLock()
        self._loaded = False
        self._extra: list[tuple[object, str]] = []
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self._registries: dict[str, dict[str, Registration]] = {kind: {} for kind in KINDS}
        self._failed_observers: set[str] = set()
        self._tracing = False

    def _trace(self, plugin: str, hook: str, detail: str = "") -> None:
        # Each plugin's implementation reports its own call (see isolation.py), so a trace names plugins.
        if self._tracing:
            sys.stderr.write(f"rlm plugins: {hook} -> {plugin}{f' ({detail})' if detail else ''}\n")

    def _enable_tracing(self) -> None:
        self._tracing = bool(os.environ.get("RLM_TRACE_PLUGINS"))

    def _on_hook_error(self, plugin: str, hook: str, exc: Exception) -> None:
        if hook == "rlm_on_event":
            if plugin not in self._failed_observers:
                self._failed_observers.add(plugin)
                warnings.warn(
                    f"rlm plugin {plugin!r} raised in rlm_on_event (reported once, run continues):\n"
                    + "".join(traceback.format_exception(exc)),
                    RuntimeWarning,
                    stacklevel=2,
                )
            return
        info = self.infos.get(plugin)
        if info is None:
            return
        message = str(exc) if isinstance(exc, PluginError) else f"{hook} raised {exc!r}"
        self._record_error(info, message, exc)

    # -- loading -------------------------------------------------------------------------------

    def register_plugin(self, plugin: object, name: str | None = None) -> None:
        """Register an in-process plugin object or module (tests, notebooks, apps)."""
        plugin_name = name or getattr(plugin, "__name__", None) or repr(plugin)
        with self._lock:
            if self._loaded:
                self._add_plugin(plugin, plugin_name, PluginInfo(plugin_name, _module_name(plugin)))
                self._collect_registrations(plugin_name)
            else:
                self._extra.append((plugin, plugin_name))

    def unregister_plugin(self, name: str) -> None:
        with self._lock:
            self._extra = [(p, n) for p, n in self._extra if n != name]
            if self.pm.get_plugin(name) is not None:
                self.pm.unregister(name=name)
            self.infos.pop(name, None)
            for registry in self._registries.values():
                for key in [k for k, reg in registry.items() if reg.plugin == name]:
                    del registry[key]

    def ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            self._enable_tracing()
            from rlm_core.plugins import builtins

            self._add_plugin(builtins, BUILTIN_PLUGIN, _builtin_info())
            for plugin, name in self._extra:
                self._add_plugin(plugin, name, PluginInfo(name, _module_name(plugin)))
            if self._load_entry_points:
                self._load_from_entry_points()
            self._collect_registrations(None)
            self._loaded = True

    def _load_from_entry_points(self) -> None:
        only = _env_list("RLM_PLUGINS")
        blocked = _env_list("RLM_DISABLE_PLUGINS") or set()
        seen: set[tuple[str, str]] = set()
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if (ep.name, ep.value) in seen:
                continue  # the same distribution found twice on sys.path
            seen.add((ep.name, ep.value))
            if ep.name in blocked or (only is not None and ep.name not in only):
                continue
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                name=ep.name,
                module=ep.value,
                distribution=dist.metadata["Name"] if dist is not None else None,
                version=dist.version if dist is not None else None,
            )
            try:
                plugin = ep.load()
            except Exception as exc:
                self._record_error(info, f"failed to import {ep.value!r}: {exc!r}", exc)
                self.infos[ep.name] = info
                continue
            self._add_plugin(plugin, ep.name, info)

    def _add_plugin(self, plugin: object, name: str, info: PluginInfo) -> None:
        self.infos[name] = info
        try:
            tracer = self._trace if self._tracing else None
            self.pm.register(IsolatedPlugin(plugin, name, self._on_hook_error, tracer), name=name)
        except Exception as exc:
            self._record_error(info, f"could not be registered: {exc}", exc)

    def _collect_registrations(self, plugin_name: str | None) -> None:
        """Call the registration hooks through pluggy: for every plugin, or for one added late."""
        if plugin_name is not None and self.pm.get_plugin(plugin_name) is None:
            return
        others = [
            plugin
            for name, plugin in self.pm.list_name_plugin()
            if plugin_name is not None and name != plugin_name
        ]
        for kind in KINDS:
            hook_name = f"rlm_register_{kind}"
            hook = (
                self.pm.subset_hook_caller(hook_name, others) if others else getattr(self.pm.hook, hook_name)
            )
            hook(register=self._make_register(kind))

    def _make_register(self, kind: str) -> hookspecs.Register:
        registry = self._registries[kind]

        def register(name: str, factory: Any, *, replace: bool = False, hint: str | None = None) -> None:
            # The isolating stand-in says which plugin is calling.
            plugin_name = current_plugin.get() or "?"
            info = self.infos.setdefault(plugin_name, PluginInfo(plugin_name, plugin_name))
            if not callable(factory):
                raise PluginError(f"plugin {plugin_name!r} registered {kind} {name!r} with a non-callable")
            existing = registry.get(name)
            # Whichever side passed replace=True wins, in whatever order pluggy called the plugins.
            if existing is not None and existing.replace and not replace:
                return
            if existing is not None and replace == existing.replace:
                raise PluginError(
                    f"{_noun(kind)} name {name!r} is registered by both plugin "
                    f"{existing.plugin!r} and plugin {plugin_name!r}; rename one, disable one with "
                    f"RLM_DISABLE_PLUGINS, or pass replace=True from the one that should win"
                )
            registry[name] = Registration(name, factory, plugin_name, hint, replace)
            info.registered.setdefault(kind, []).append(name)

        return register

    def _record_error(self, info: PluginInfo, message: str, exc: BaseException) -> None:
        info.error = message if info.error is None else f"{info.error}; {message}"
        if _strict():
            raise PluginError(f"plugin {info.name!r}: {message}") from exc
        warnings.warn(f"rlm plugin {info.name!r} skipped: {message}", RuntimeWarning, stacklevel=3)

    # -- look-ups ------------------------------------------------------------------------------

    def names(self, kind: str) -> list[str]:
        self.ensure_loaded()
        return sorted(self._registries[kind])

    def get(self, kind: str, name: str) -> Registration:
        self.ensure_loaded()
        registration = self._registries[kind].get(name)
        if registration is None:
            raise UnknownNameError(self._unknown_message(kind, name))
        return registration

    def create(self, kind: str, name: str, **kwargs: Any) -> Any:
        registration = self.get(kind, name)
        self.check_kwargs(kind, name, kwargs)
        return registration.factory(**kwargs)

    def check_kwargs(
        self, kind: str, name: str, kwargs: Any, where: str | None = None, *, build: bool = False
    ) -> None:
        """Check settings against what the factory of ``name`` takes, without calling it.

        Unknown names fail with a "did you mean" suggestion; a factory that forwards unknown
        settings (a client's provider parameters) only fails for a name that is a near miss of
        one it knows, since a typo there would otherwise be sent to the provider. When the factory
        only forwards ``**kwargs``, its settings cannot be read: ``build=True`` then calls it once
        and drops the result (for environments building starts nothing, ``start()`` does), so the
        factory's own checks of names and values run now instead of at the first run.
        """
        registration = self.get(kind, name)
        where = where or f"{_noun(kind)} {name!r}"
        parameters = factory_parameters(registration.factory, follow_bases=kind == "clients")
        if parameters is not None:
            self._check_names(kind, where, parameters, kwargs)
        if build:
            registration.factory(**kwargs)

    def _check_names(self, kind: str, where: str, parameters: Parameters, kwargs: Any) -> None:
        known = set(parameters.names)
        for key in kwargs:
            if key in known:
                continue
            hint = did_you_mean(str(key), parameters.names)
            # Only clients pass unknown settings on (to the provider); environments and loggers
            # that take **kwargs do so to reject them with a message of their own.
            forwards = parameters.open and kind == "clients"
            if forwards and not hint:
                continue  # passed through as it is (e.g. a provider's own request parameter)
            accepted = ", ".join(n for n in parameters.names if not n.startswith("_"))
            raise ConfigurationError(
                f"{where} got an unknown setting {str(key)!r}.{hint} It takes: {accepted}."
                + (" Other names are sent to the provider as request parameters." if forwards else "")
            )
        missing = [n for n in parameters.required if n not in kwargs]
        if missing:
            raise ConfigurationError(
                f"{where} needs {', '.join(missing)}; pass "
                + ", ".join(f"{n}=..." for n in missing)
                + (
                    " (for a logger: logger='NAME:VALUE', e.g. logger='jsonl:./logs')"
                    if kind == "loggers"
                    else ""
                )
            )

    def _unknown_message(self, kind: str, name: str) -> str:
        noun = _noun(kind)
        available = ", ".join(sorted(self._registries[kind])) or "none"
        message = (
            f"unknown {noun} {name!r}; available: {available}.{did_you_mean(name, self._registries[kind])}"
        )
        if name not in self._registries[kind]:
            message += (
                f" If a plugin provides it, install that plugin (plugins are published as "
                f"{DISTRIBUTION_PREFIX}<name>, e.g. pip install {DISTRIBUTION_PREFIX}{name}) and see `rlm plugins`."
            )
        broken = [i for i in self.infos.values() if i.error]
        if broken:
            message += " Plugins that failed to load: " + "; ".join(f"{i.name}: {i.error}" for i in broken)
        return message

    def plugin_infos(self) -> list[PluginInfo]:
        self.ensure_loaded()
        return list(self.infos.values())

    # -- events --------------------------------------------------------------------------------

    def emit(self, event: Any) -> None:
        """Send a run event to every ``rlm_on_event`` observer; observers never break a run."""
        self.ensure_loaded()
        self.pm.hook.rlm_on_event(event=event)

    def default_backend(self) -> tuple[str, dict[str, Any], str] | None:
        """The first plugin's offer to serve when no backend is named and no provider key is set:
        ``(backend, backend_kwargs, reason)``, or None (the ``firstresult`` hook ``rlm_default_backend``)."""
        self.ensure_loaded()
        answer = self.pm.hook.rlm_default_backend()
        if answer is None:
            return None
        if not (isinstance(answer, tuple) and len(answer) in (2, 3) and isinstance(answer[0], str)):
            raise PluginError(
                f"rlm_default_backend returned {answer!r}; expected (backend_name, backend_kwargs[, reason]) "
                "or None"
            )
        registration = self._registries["clients"].get(answer[0])
        plugin = registration.plugin if registration is not None else "a plugin"
        reason = str(answer[2]) if len(answer) == 3 else f"offered by {plugin} as the no-key default"
        return answer[0], dict(answer[1] or {}), reason

    def hints(self, kind: str) -> list[str]:
        """The registered names of ``kind`` that carry a hint, as ``"name: hint"`` lines."""
        self.ensure_loaded()
        return [
            f"{r.name}: {r.hint}"
            for r in sorted(self._registries[kind].values(), key=lambda r: r.name)
            if r.hint
        ]

    def call_each(self, hook: str, **kwargs: Any) -> list[HookAnswer]:
        """Call every implementation of ``hook`` one at a time, so one plugin's failure never hides
        the others' answers; an exception is returned in its plugin's answer, not raised."""
        self.ensure_loaded()
        answers = []
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            self._trace(impl.plugin_name, hook)
            try:
                # The plugin's own function (this loop isolates each call itself, and keeps the error).
                function = getattr(impl.function, "__wrapped__", impl.function)
                answers.append(HookAnswer(impl.plugin_name, function(**kwargs)))
            except Exception as exc:
                answers.append(HookAnswer(impl.plugin_name, None, exc))
        return answers

    def has_observers(self) -> bool:
        self.ensure_loaded()
        return bool(self.pm.hook.rlm_on_event.get_hookimpls())


_NOUNS = {"routing_policies": "routing policy", "strategies": "strategy"}


def _noun(kind: str) -> str:
    return _NOUNS.get(kind) or kind[:-1].replace("_", " ")


def _module_name(plugin: object) -> str:
    return getattr(plugin, "__name__", None) or type(plugin).__module__


def _builtin_info() -> PluginInfo:
    try:
        version: str | None = metadata.version("rlm-core")
    except metadata.PackageNotFoundError:
        version = None
    return PluginInfo(BUILTIN_PLUGIN, BUILTIN_PLUGIN, distribution="rlm-core", version=version)


_registry: PluginRegistry | None = None
_registry_lock = threading.Lock()


def get_registry() -> PluginRegistry:
    """The process-wide registry (created on first use)."""
    global _registry
    if _registry is None:
        with _registry_lock:
            if _registry is None:
                _registry = PluginRegistry()
    return _registry


def reset_registry() -> None:
    """Forget the process-wide registry so the next look-up rediscovers plugins (tests)."""
    global _registry
    with _registry_lock:
        _registry = None


def available(kind: str) -> Iterable[str]:
    return get_registry().names(kind)
