"""Secret redaction: masks API keys and credentials before anything reaches a log, an event or a sandbox.

``redact(value)`` masks values under secret-named keys, known key shapes, URL credentials and the
values of this process's secret-named environment variables inside any string; ``redact_env(mapping)``
drops secret variables from an environment handed to a sandbox; ``safe_repr(value)`` describes a
value for an error message without echoing anything that may be a secret; ``Secret`` holds a
credential inside a client object.
"""

from __future__ import annotations

import enum
import functools
import os
import re
from collections.abc import Mapping
from typing import Any

import attrs

REDACTED = "[REDACTED]"


class Secret:
    """Holds a credential (an API key, a secret access key) so that repr(), vars() and logs of the
    client holding it never show it; ``reveal()`` gives it to the SDK call that needs it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"


# Name parts that mark a mapping key or environment variable as secret. "key" alone counts: the
# design says anything named key is secret; numbers under such names survive anyway.
_SECRET_PARTS = frozenset(
    {
        "apikey",
        "key",
        "keys",
        "secret",
        "secrets",
        "password",
        "passwords",
        "passwd",
        "passphrase",
        "pwd",
        "token",
        "tokens",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "cookie",
        "cookies",
    }
)
# A part glued from several words ("authtoken", "secretkey") still names a secret.
_SECRET_SUFFIXES = ("apikey", "token", "secret", "password", "passwd", "accesskey", "secretkey", "privatekey")
_NAME_PARTS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

# Known key shapes, each with the literals one of which must occur for it to match: checking those
# with ``in`` first (fast substring search) lets a large string without secrets skip the regex, and
# a string with some runs one combined pattern of only the shapes that can match. Each body is
# greedy over its whole character class so a key glued to other token-like characters is consumed
# entirely rather than leaving a tail behind; short prefixes must not follow a letter or digit, so
# kebab-case words such as "disk-..." or "task-..." are left alone.
_SHAPES: tuple[tuple[tuple[str, ...], str], ...] = (
    # OpenAI sk-..., sk-proj-..., and Anthropic sk-ant-...
    (("sk-",), r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]{20,}"),
    (("AKIA", "ASIA"), r"(?:AKIA|ASIA)[A-Z0-9]{16,}"),  # AWS access key ids
    (("gh",), r"(?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{20,}"),  # GitHub classic tokens
    (("github_pat_",), r"github_pat_[A-Za-z0-9_]{20,}"),  # GitHub fine-grained tokens
    (("xox",), r"xox[abprs]-[A-Za-z0-9\-]{10,}"),  # Slack tokens
    (("AIza",), r"AIza[A-Za-z0-9_\-]{30,}"),  # Google API keys
    (("ak-", "as-"), r"(?<![A-Za-z0-9])a[ks]-[A-Za-z0-9]{20,}"),  # Modal token ids and secrets
    # Bearer headers keep the scheme word so a reader still sees what was there. The literals cover
    # "Bearer", "bearer" and "BEARER" (the spellings seen in practice).
    (("earer", "EARER"), r"(?P<bearer>[Bb][Ee][Aa][Rr][Ee][Rr]\s+)[A-Za-z0-9._~+/=\-]{8,}"),
    # Passwords in URLs (scheme://user:password@host, also with an empty user) keep the user and host.
    (("://",), r"(?P<userinfo>://[^\s/:@]*:)[^\s/@]+(?=@)"),
)
# A secret environment value shorter than this is not masked inside text: "1" or "true" under a
# name such as USE_AUTH would otherwise blank every digit or word in a log.
MIN_ENV_SECRET_CHARS = 8


@functools.lru_cache(maxsize=64)
def _combined(indices: tuple[int, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{_SHAPES[i][1]})" for i in indices))


def _pattern_for(text: str) -> re.Pattern[str] | None:
    indices = tuple(
        i for i, (literals, _) in enumerate(_SHAPES) if any(literal in text for literal in literals)
    )
    return _combined(indices) if indices else None


def is_secret_name(name: str) -> bool:
    """Whether a key or variable name says its value is a secret (``api_key``, ``AUTH_TOKEN``, ``apiKey``)."""
    return _is_secret_name(name)


@functools.lru_cache(maxsize=4096)
def _is_secret_name(name: str) -> bool:
    for part in _NAME_PARTS.findall(name):
        lowered = part.lower()
        if lowered in _SECRET_PARTS or lowered.endswith(_SECRET_SUFFIXES):
            return True
    return False


def _replace(match: re.Match[str]) -> str:
    groups = match.groupdict()
    prefix = groups.get("bearer") or groups.get("userinfo")
    return f"{prefix}{REDACTED}" if prefix else REDACTED


def secret_env_values(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The values of secret-named variables in ``environ`` (default: this process's environment),
    longest first so a value containing another is masked whole."""
    env = os.environ if environ is None else environ
    return _secret_values(tuple(sorted((k, v) for k, v in env.items() if _is_secret_name(k))))


@functools.lru_cache(maxsize=8)
def _secret_values(items: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    values = {v for _, v in items if isinstance(v, str) and len(v) >= MIN_ENV_SECRET_CHARS}
    return tuple(sorted(values, key=len, reverse=True))


def _mask_env_values(text: str, values: tuple[str, ...]) -> str:
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact_text(text: str, env_values: tuple[str, ...] | None = None) -> str:
    """Mask every known key shape, URL password and secret environment value in ``text``."""
    text = _mask_env_values(text, secret_env_values() if env_values is None else env_values)
    pattern = _pattern_for(text)
    return text if pattern is None else pattern.sub(_replace, text)


def safe_repr(value: Any, limit: int = 40) -> str:
    """What a value is, fit for an error message: numbers, booleans, None and short plain words are
    shown; any other string only by its type and length, since a key put in the wrong setting must
    not come back in the error (and from there into logs and bug reports)."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, str):
        if (
            len(value) <= 12
            and value.replace("_", "").replace("-", "").isalpha()
            and not contains_secret(value)
        ):
            return repr(value)
        return f"a str of {len(value)} characters (not shown: it may be a secret)"
    size = f" of {len(value)} items" if isinstance(value, (list, tuple, dict, set)) else ""
    return f"a {type(value).__name__}{size}"


def contains_secret(text: str) -> bool:
    """Whether ``text`` holds something shaped like a known key."""
    pattern = _pattern_for(text)
    return pattern is not None and pattern.search(text) is not None


def redact(value: Any) -> Any:
    """A copy of ``value`` with secrets replaced by ``"[REDACTED]"``.

    Walks dicts, lists, tuples, sets and attrs instances. Under a secret-named key every string is
    replaced, while numbers, booleans and None survive (token counts such as ``max_tokens``). Known
    key shapes are masked in every string. Other objects are returned unchanged.
    """
    return _redact(value, False, secret_env_values())


def _redact(value: Any, secret: bool, env: tuple[str, ...]) -> Any:
    # Order matters: str-valued enums are strings too, and must keep their type.
    if value is None or isinstance(value, (bool, int, float, enum.Enum)):
        return value
    if isinstance(value, str):
        return REDACTED if secret else redact_text(value, env)
    if isinstance(value, (bytes, bytearray)):
        return REDACTED if secret else value
    if isinstance(value, Mapping):
        return {
            key: _redact(item, secret or (isinstance(key, str) and _is_secret_name(key)), env)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redact(item, secret, env) for item in value]
    if isinstance(value, tuple):
        items = [_redact(item, secret, env) for item in value]
        if hasattr(value, "_fields"):  # namedtuple
            return type(value)(*items)
        return tuple(items)
    if isinstance(value, (set, frozenset)):
        return type(value)(_redact(item, secret, env) for item in value)
    if attrs.has(type(value)):
        return _redact_attrs(value, secret, env)
    return value


def _redact_attrs(value: Any, secret: bool, env: tuple[str, ...]) -> Any:
    changes: dict[str, Any] = {}
    for field in attrs.fields(type(value)):
        current = getattr(value, field.name)
        new = _redact(current, secret or _is_secret_name(field.name), env)
        if new is not current and new != current:
            if not field.init:
                # evolve() cannot set it; fall back to the plain (unstructured) form.
                return _redact(attrs.asdict(value, recurse=True), secret, env)
            changes[field.alias or field.name] = new
    return attrs.evolve(value, **changes) if changes else value


def redact_env(mapping: Mapping[str, str]) -> dict[str, str]:
    """A copy of an environment safe to pass to a sandbox.

    Variables whose name says secret (``OPENAI_API_KEY``, ``AWS_SESSION_TOKEN``) are dropped
    entirely, and so are variables whose value holds a known key shape: a masked value is of no use
    inside the sandbox.
    """
    return {
        name: value
        for name, value in mapping.items()
        if not _is_secret_name(name) and not (isinstance(value, str) and contains_secret(value))
    }
