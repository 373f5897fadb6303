"""Code-execution environments: the contract, the sandbox host side and its transport contract.

The public names load on first use, so importing one module of this package (``base``, the stdlib
``runtime``) does not load the sandbox host and its asyncio machinery too."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rlm_core._lazy import lazy_names

if TYPE_CHECKING:
    from rlm_core.environments.base import Environment, ExecResult, HostCall
    from rlm_core.environments.sandbox import SandboxEnvironment
    from rlm_core.environments.transport import ByteStream, ChunkedUpload, Transport

_LAZY = {
    "ByteStream": "rlm_core.environments.transport",
    "ChunkedUpload": "rlm_core.environments.transport",
    "Environment": "rlm_core.environments.base",
    "ExecResult": "rlm_core.environments.base",
    "HostCall": "rlm_core.environments.base",
    "SandboxEnvironment": "rlm_core.environments.sandbox",
    "Transport": "rlm_core.environments.transport",
}

__all__ = [
    "ByteStream",
    "ChunkedUpload",
    "Environment",
    "ExecResult",
    "HostCall",
    "SandboxEnvironment",
    "Transport",
]


__getattr__ = lazy_names(__name__, globals(), _LAZY)
