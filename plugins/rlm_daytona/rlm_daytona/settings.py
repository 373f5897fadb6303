"""Which variables may enter a Daytona sandbox: the user's own plain ones, never a secret by accident.

``env`` holds plain variables: one that the core's redaction would drop (a secret-like name such as
``*_API_KEY`` or ``*_TOKEN``, or a value shaped like a known key) is refused, since it is most likely
the host's credential passed on by mistake. A secret the code needs goes in ``secrets``, which names
Daytona organization Secrets: the sandbox sees only their placeholders, never the values.
"""

from __future__ import annotations

from collections.abc import Mapping

from rlm_core.errors import ConfigurationError
from rlm_core.redact import redact_env


def plain_variables(env: Mapping[str, str] | None) -> dict[str, str]:
    """``env`` as a dict, or a ConfigurationError naming what looks secret."""
    env = dict(env or {})
    if not all(isinstance(name, str) and isinstance(value, str) for name, value in env.items()):
        raise ConfigurationError("env takes string names and values, e.g. env={'MODE': 'report'}")
    refused = sorted(set(env) - set(redact_env(env)))
    if refused:
        raise ConfigurationError(
            f"env variables {refused} look like secrets, and the sandbox gets none by accident; make them "
            "Daytona Secrets and name them in secrets={'VARIABLE': 'secret-name'}"
        )
    return env


def secret_references(secrets: Mapping[str, str] | None) -> dict[str, str]:
    """``secrets`` as ``{variable: organization Secret name}``, both strings."""
    secrets = dict(secrets or {})
    if not all(isinstance(name, str) and isinstance(secret, str) for name, secret in secrets.items()):
        raise ConfigurationError(
            "secrets maps variable names to Daytona organization Secret names, e.g. "
            "secrets={'DB_PASSWORD': 'team-db-password'}"
        )
    return secrets
