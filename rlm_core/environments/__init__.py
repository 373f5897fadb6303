"""Code-execution environments: the contract and the built-in ``local`` REPL."""

from rlm_core.environments.base import Environment, ExecResult, HostCall

__all__ = ["Environment", "ExecResult", "HostCall"]
