"""Who owns a sandbox, for ``rlm cleanup``: the names this module always offered, now kept in
:mod:`rlm_core.environments.lifecycle` with the rest of the sandbox lifecycle (import from there)."""

from __future__ import annotations

from rlm_core.environments.lifecycle.live import LiveSandboxes
from rlm_core.environments.lifecycle.owners import Owner, is_orphan, parse_pid, pid_alive

__all__ = ["LiveSandboxes", "Owner", "is_orphan", "parse_pid", "pid_alive"]
