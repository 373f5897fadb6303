"""The ``rlm serve`` config file (TOML): server settings, default key limits and the profiles, each
a model name clients ask for and the ``RLM(...)`` arguments behind it. docs/serve.md shows one.

A profile takes ``RLM``'s own arguments under their own names (the limits are checked by
``rlm_core.config.RLMConfig``, the backends, environment, strategy and loggers when the server
builds each profile's RLM at start), except the ones a shared service cannot honour:
``custom_tools`` (code, not TOML), ``persistent`` (each request is its own completion) and
``verbose``. Relative paths are relative to the directory ``rlm serve`` runs in.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from rlm_core.config import RLMConfig
from rlm_core.errors import ConfigurationError
from rlm_core.serve.limits import KeyLimits

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
# RLM(...) arguments a profile may set (the rest of RLM's are code, or one-user features).
PROFILE_SETTINGS = frozenset(
    {
        "backend",
        "backend_kwargs",
        "environment",
        "environment_kwargs",
        "other_backends",
        "other_backend_kwargs",
        "routing",
        "logger",
        "strategy",
        "strategy_kwargs",
        "custom_system_prompt",
        *(f.name for f in attrs.fields(RLMConfig) if f.name not in ("custom_tools", "persistent")),
    }
)
_NOT_IN_A_PROFILE = {
    "custom_tools": "tools are code; give them to an RLM in Python instead",
    "persistent": "each request is its own completion; the service keeps no REPL between requests",
    "verbose": "the console view is for one user at a terminal; use logger = 'jsonl:DIR'",
}
_SERVER_SETTINGS = {
    "host",
    "port",
    "keys_file",
    "limits_db",
    "max_body_bytes",
    "keepalive_seconds",
    "grace_seconds",
    "key_defaults",
    "min_request_tokens",
    "min_request_usd",
    "ray",
    "ray_workers",
}


@attrs.define(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    keys_file: str | None = None
    limits_db: str = "rlm-serve-limits.sqlite3"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    keepalive_seconds: float = 10.0  # an SSE comment this often while a streamed completion works
    grace_seconds: float = 30.0  # on SIGTERM, how long running completions may finish
    # A key's day with fewer tokens left than this refuses new completions (429): a completion
    # with less cannot even send its first prompt (the engine estimates prompts conservatively).
    min_request_tokens: int = 4_000
    min_request_usd: float = 0.01  # likewise for a key's daily USD ceiling
    key_defaults: KeyLimits = attrs.field(factory=KeyLimits)
    # Run the completions on a Ray cluster: "local" (a cluster for this server, on this machine),
    # "auto" or "ray://host:10001"; None runs them in this process.
    ray: str | None = None
    ray_workers: int | None = None  # worker actors (default: one per CPU of the cluster)


@attrs.define(frozen=True)
class Profile:
    """A model name of the service and the ``RLM(...)`` arguments that serve it."""

    name: str
    rlm_kwargs: dict[str, Any]

    @property
    def limits(self) -> RLMConfig:
        """The profile's limits; a request may only lower them."""
        return RLMConfig(**{k: v for k, v in self.rlm_kwargs.items() if k in attrs.fields_dict(RLMConfig)})


@attrs.define(frozen=True)
class ServeConfig:
    server: ServerSettings
    profiles: dict[str, Profile]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_profile(name: str, settings: Mapping[str, Any]) -> Profile:
    where = f"profile {name!r}"
    for setting, why in _NOT_IN_A_PROFILE.items():
        if setting in settings:
            raise ConfigurationError(f"{where}: {setting} cannot be set in a served profile: {why}")
    unknown = sorted(set(settings) - PROFILE_SETTINGS)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown settings {', '.join(unknown)}; a profile takes RLM's arguments: "
            + ", ".join(sorted(PROFILE_SETTINGS))
        )
    profile = Profile(name, dict(settings))
    try:
        profile.limits  # noqa: B018 (validates the limits now, with RLMConfig's messages)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from exc
    return profile


def _server_settings(table: Mapping[str, Any]) -> ServerSettings:
    from rlm_core.serve.keys import key_defaults

    unknown = sorted(set(table) - _SERVER_SETTINGS)
    if unknown:
        raise ConfigurationError(
            f"[server] has unknown settings {', '.join(unknown)}; it takes {', '.join(sorted(_SERVER_SETTINGS))}"
        )
    values = dict(table)
    values["key_defaults"] = key_defaults(values.get("key_defaults"))
    for name, kind in (("port", int), ("max_body_bytes", int), ("min_request_tokens", int)):
        if name in values and (isinstance(values[name], bool) or not isinstance(values[name], kind)):
            raise ConfigurationError(f"[server] {name} must be an integer, got {values[name]!r}")
    if "ray" in values and not (isinstance(values["ray"], str) and values["ray"].strip()):
        raise ConfigurationError(
            f"[server] ray must be 'local', 'auto' or a cluster address, got {values['ray']!r}"
        )
    workers = values.get("ray_workers", 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigurationError(f"[server] ray_workers must be a positive integer, got {workers!r}")
    for name in ("keepalive_seconds", "grace_seconds", "min_request_usd"):
        value = values.get(name, 1.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigurationError(f"[server] {name} must be a positive number, got {value!r}")
    return ServerSettings(**values)


def parse_config(data: Mapping[str, Any], source: str = "the config") -> ServeConfig:
    unknown = sorted(set(data) - {"server", "profiles"})
    if unknown:
        raise ConfigurationError(
            f"{source} has unknown tables {', '.join(unknown)}; it takes [server] and [profiles.NAME]"
        )
    profiles_table = data.get("profiles") or {}
    if not profiles_table:
        raise ConfigurationError(
            f"{source} defines no profile; add one: [profiles.my-rlm] backend = 'openai' ..."
        )
    profiles = {name: check_profile(name, settings) for name, settings in profiles_table.items()}
    return ServeConfig(_server_settings(data.get("server") or {}), profiles)


def load_config(path: str | Path) -> ServeConfig:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read the config file {str(path)!r}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"the config file {str(path)!r} is not valid TOML: {exc}") from exc
    return parse_config(data, f"config file {str(path)!r}")
