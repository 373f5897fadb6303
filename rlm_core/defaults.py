"""Default backend resolution: which client ``RLM()`` and ``rlm run`` use when none is named.

Imports no provider SDK and no plugin module: it reads the environment, the plugin registry and
installed-distribution metadata only, so it stays cheap enough for every CLI start.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path
from typing import Any

import attrs

from rlm_core.errors import ConfigurationError

__all__ = [
    "PROVIDER_PRESETS",
    "Resolution",
    "cache_dir",
    "describe_resolution",
    "resolve",
    "resolve_backend",
]


@attrs.define(frozen=True)
class ProviderPreset:
    """A hosted provider picked when its API key is in the environment."""

    backend: str
    key_env: str
    model_env: str
    default_model: str


# Checked in this order; the first key present wins. Each default model can be overridden with
# its RLM_*_MODEL variable, so a changed provider line-up never needs a release to work around.
PROVIDER_PRESETS: tuple[ProviderPreset, ...] = (
    ProviderPreset("openai", "OPENAI_API_KEY", "RLM_OPENAI_MODEL", "gpt-5-mini"),
    ProviderPreset("anthropic", "ANTHROPIC_API_KEY", "RLM_ANTHROPIC_MODEL", "claude-sonnet-4-5"),
    ProviderPreset("openrouter", "OPENROUTER_API_KEY", "RLM_OPENROUTER_MODEL", "openai/gpt-5-mini"),
    ProviderPreset("gemini", "GEMINI_API_KEY", "RLM_GEMINI_MODEL", "gemini-2.5-flash"),
)


def cache_dir() -> Path:
    """Where rlm-core keeps downloaded or assembled files.

    ``$RLM_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/rlm-core``, else ``~/.cache/rlm-core``.
    """
    explicit = os.environ.get("RLM_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "rlm-core"


@attrs.define(frozen=True)
class Resolution:
    """The chosen backend, its keyword arguments, and a one-line reason (for people, not code)."""

    backend: str
    backend_kwargs: dict[str, Any]
    reason: str

    def describe(self) -> str:
        model = self.backend_kwargs.get("model_name")
        what = f"{self.backend} ({model})" if model else self.backend
        return f"backend: {what}; {self.reason}"


def is_installed(distribution: str) -> bool:
    """Whether a distribution is installed, without importing it."""
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def _registry() -> Any:
    from rlm_core.plugins.registry import get_registry

    return get_registry()


def resolve(backend: str | None = None, backend_kwargs: dict[str, Any] | None = None) -> Resolution:
    """Like :func:`resolve_backend`, but also says why (see :class:`Resolution`)."""
    kwargs = dict(backend_kwargs or {})
    if backend:
        return Resolution(backend, kwargs, "named explicitly")

    for preset in PROVIDER_PRESETS:
        if os.environ.get(preset.key_env):
            model = os.environ.get(preset.model_env) or preset.default_model
            source = f"${preset.model_env}" if os.environ.get(preset.model_env) else "default model"
            # The caller's kwargs (e.g. their own model_name) win over the preset's.
            return Resolution(
                preset.backend,
                {"model_name": model, **kwargs},
                f"${preset.key_env} is set ({source}; override with ${preset.model_env} or --backend)",
            )

    registry = _registry()
    offer = registry.default_backend()
    if offer is not None:
        backend_name, offered_kwargs, reason = offer
        return Resolution(backend_name, {**offered_kwargs, **kwargs}, reason)

    hints = registry.hints("clients")
    installed = (" Installed model plugins say: " + "; ".join(hints) + ".") if hints else ""
    raise ConfigurationError(
        "No model backend is configured: pass backend=... (and backend_kwargs), or set a provider key "
        "(`export OPENAI_API_KEY=...`, or ANTHROPIC_API_KEY, OPENROUTER_API_KEY, GEMINI_API_KEY), or install "
        "a plugin that offers a local model (the README's Install section names the project's own; "
        f"`rlm plugins` lists what is installed).{installed}"
    )


def resolve_backend(
    backend: str | None = None, backend_kwargs: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """Pick the backend and its kwargs when the user did not (fully) say.

    Order:

    1. an explicit ``backend`` wins, with ``backend_kwargs`` as given;
    2. a provider API key in the environment, checked in this order: ``OPENAI_API_KEY`` -> ``openai``,
       ``ANTHROPIC_API_KEY`` -> ``anthropic``, ``OPENROUTER_API_KEY`` -> ``openrouter``,
       ``GEMINI_API_KEY`` -> ``gemini``; the model is ``$RLM_<PROVIDER>_MODEL`` or a current default.
       The key itself is never put into the kwargs: each client reads its own variable;
    3. a plugin that offers itself (the ``firstresult`` hook ``rlm_default_backend``), e.g. an
       embedded local model whose files are installed.

    ``backend_kwargs`` given without a backend are laid over the chosen defaults. Raises
    ``ConfigurationError`` saying what to set or install when nothing is available.
    """
    resolution = resolve(backend, backend_kwargs)
    return resolution.backend, resolution.backend_kwargs


def describe_resolution(backend: str | None = None, backend_kwargs: dict[str, Any] | None = None) -> str:
    """One line for people: what :func:`resolve_backend` picks and why (raises like it)."""
    return resolve(backend, backend_kwargs).describe()
