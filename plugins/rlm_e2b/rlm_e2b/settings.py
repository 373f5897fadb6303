"""Which variables may enter an E2B sandbox: the user's own, never a secret by accident.

``env`` holds plain variables; a name the core counts as secret (``*_API_KEY``, ``*_TOKEN``, ...) or a
value shaped like a known key is refused there, since it is most likely the host's credential passed
on by mistake. A secret the code inside really needs goes in ``secrets``, on purpose.
"""

from __future__ import annotations

from collections.abc import Mapping

from rlm_core.errors import ConfigurationError
from rlm_core.redact import contains_secret, is_secret_name


def plain_variables(env: Mapping[str, str] | None) -> dict[str, str]:
    """``env`` checked: string names and values, nothing secret-named or key-shaped."""
    checked = {}
    for name, value in (env or {}).items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise ConfigurationError(
                f"env takes string names and values, got {name!r}: {type(value).__name__}"
            )
        if is_secret_name(name) or contains_secret(value):
            raise ConfigurationError(
                f"env variable {name!r} looks like a secret; the sandbox gets no secrets unless you mean it: "
                "pass it in secrets= instead"
            )
        checked[name] = value
    return checked


def secret_variables(secrets: Mapping[str, str] | None) -> dict[str, str]:
    """``secrets`` checked: string names and values, passed on as they are."""
    for name, value in (secrets or {}).items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise ConfigurationError(f"secrets takes string names and values, got {name!r}")
    return dict(secrets or {})
