"""Bearer keys: read from a keys file (SHA-256 hashes) or the environment (``RLM_SERVE_KEYS``,
hashed at once), and matched in constant time. A key's name, never the key, names it in logs.

Keys file (TOML)::

    [[keys]]
    name = "alice"
    sha256 = "5e88...a1"          # sha256 hex of the key: `rlm serve --new-key alice` prints one
    max_concurrent = 4            # completions at once (default: [server.key_defaults])
    tokens_per_day = 2_000_000    # tokens per UTC day (default: no ceiling)
    usd_per_day = 10.0            # USD per UTC day (default: no ceiling)
    models = ["rlm-small"]        # profiles the key may use (default: all)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from rlm_core.errors import ConfigurationError
from rlm_core.serve.limits import KeyLimits

ENV_KEYS = "RLM_SERVE_KEYS"
_KEY_FIELDS = {"name", "sha256", "max_concurrent", "tokens_per_day", "usd_per_day", "models"}


def hash_key(key: str) -> str:
    """The stored form of a key. Keys are long random strings, so one SHA-256 is enough (a slow
    password hash buys nothing against a 256-bit secret)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return "rlm-" + secrets.token_urlsafe(32)


@attrs.define(frozen=True)
class ApiKey:
    name: str
    digest: str = attrs.field(repr=False)
    limits: KeyLimits
    models: frozenset[str] | None = None  # None: every profile

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models


class KeyRing:
    """The keys a server accepts; ``match(bearer)`` compares against every one in constant time."""

    def __init__(self, keys: list[ApiKey]) -> None:
        names = [key.name for key in keys]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ConfigurationError(f"key names must be unique; repeated: {', '.join(duplicates)}")
        self.keys = keys

    def __len__(self) -> int:
        return len(self.keys)

    def match(self, presented: str) -> ApiKey | None:
        digest = hash_key(presented).encode()
        found: ApiKey | None = None
        for key in self.keys:  # no early exit: the time taken does not depend on which key matched
            if hmac.compare_digest(digest, key.digest.encode()):
                found = key
        return found


def _limits(entry: Mapping[str, Any], defaults: KeyLimits, where: str) -> KeyLimits:
    values = {
        f: entry.get(f, getattr(defaults, f)) for f in ("max_concurrent", "tokens_per_day", "usd_per_day")
    }
    concurrent = values["max_concurrent"]
    if isinstance(concurrent, bool) or not isinstance(concurrent, int) or concurrent < 1:
        raise ConfigurationError(f"{where}: max_concurrent must be an int >= 1, got {concurrent!r}")
    tokens = values["tokens_per_day"]
    if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1):
        raise ConfigurationError(f"{where}: tokens_per_day must be an int >= 1, got {tokens!r}")
    usd = values["usd_per_day"]
    if usd is not None and (isinstance(usd, bool) or not isinstance(usd, (int, float)) or usd <= 0):
        raise ConfigurationError(f"{where}: usd_per_day must be a positive number, got {usd!r}")
    return KeyLimits(concurrent, tokens, float(usd) if usd is not None else None)


def key_defaults(table: Mapping[str, Any] | None) -> KeyLimits:
    """``[server.key_defaults]``: the limits of keys that do not set their own."""
    table = dict(table or {})
    unknown = set(table) - {"max_concurrent", "tokens_per_day", "usd_per_day"}
    if unknown:
        raise ConfigurationError(f"[server.key_defaults] has unknown settings: {', '.join(sorted(unknown))}")
    return _limits(table, KeyLimits(), "[server.key_defaults]")


def load_keys_file(path: str | Path, defaults: KeyLimits) -> list[ApiKey]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read the keys file {str(path)!r}: {exc}") from exc
    keys: list[ApiKey] = []
    for index, entry in enumerate(data.get("keys", [])):
        where = f"keys file {str(path)!r}, entry {index + 1}"
        unknown = set(entry) - _KEY_FIELDS
        if unknown:
            raise ConfigurationError(f"{where}: unknown settings {', '.join(sorted(unknown))}")
        name, digest = entry.get("name"), str(entry.get("sha256", "")).lower()
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"{where}: every key needs a name")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigurationError(
                f"{where}: sha256 must be the 64-digit hex SHA-256 of the key "
                "(`rlm serve --new-key NAME` prints a key and its entry)"
            )
        models = entry.get("models")
        keys.append(
            ApiKey(name, digest, _limits(entry, defaults, where), frozenset(models) if models else None)
        )
    return keys


def keys_from_environment(defaults: KeyLimits, environ: Mapping[str, str] | None = None) -> list[ApiKey]:
    """``RLM_SERVE_KEYS=key1,key2``: keys with the default limits, named ``env-1``, ``env-2``...;
    only their hashes are kept."""
    raw = (os.environ if environ is None else environ).get(ENV_KEYS, "")
    values = [value.strip() for value in raw.split(",") if value.strip()]
    return [ApiKey(f"env-{n}", hash_key(value), defaults) for n, value in enumerate(values, start=1)]


def key_entry(name: str, key: str) -> str:
    """The keys-file entry of ``key`` (what ``rlm serve --new-key`` prints)."""
    return f'[[keys]]\nname = "{name}"\nsha256 = "{hash_key(key)}"\n'
