"""A sandbox plugin's SDK and API key as the host finds them: the SDK imported only once a sandbox is
wanted (a missing one reported with what to install), the key from the caller or the environment."""

from __future__ import annotations

import importlib
import os
from typing import Any

from rlm_core.errors import SandboxStartError


def import_sdk(module: str, *, environment: str, sdk: str, install: str) -> Any:
    """The SDK ``module``, imported now (a plugin's import must not load it: it is slow and optional),
    e.g. ``import_sdk("e2b", environment="e2b", sdk="the E2B SDK", install="rlm-e2b")``; when it
    is missing, a SandboxStartError that says what to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SandboxStartError(
            f"the {environment} environment needs {sdk}, which is not installed; pip install {install}"
        ) from None


def configured_key(api_key: str | None, *variables: str) -> str:
    """The key an SDK would use: ``api_key``, else the first of the environment ``variables`` that is
    set and not empty; "" when there is none (then this machine cannot have started a sandbox)."""
    if api_key:
        return api_key
    return next((os.environ[name] for name in variables if os.environ.get(name)), "")
