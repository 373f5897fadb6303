"""Code-execution environments: the contract, the sandbox host side and its transport contract."""

from rlm_core.environments.base import Environment, ExecResult, HostCall
from rlm_core.environments.sandbox import SandboxEnvironment
from rlm_core.environments.transport import ByteStream, ChunkedUpload, Transport

__all__ = [
    "ByteStream",
    "ChunkedUpload",
    "Environment",
    "ExecResult",
    "HostCall",
    "SandboxEnvironment",
    "Transport",
]
