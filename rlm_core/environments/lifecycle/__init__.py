"""The sandbox lifecycle every sandbox plugin shares: who owns a sandbox and how its tags say so, the
sandboxes this process holds (ended at exit), the ``rlm cleanup`` loop, the process byte stream, and
the relay that carries it over a text-only command API.

A plugin supplies the service's own calls (create, terminate, list, read tags); the rest is here::

    from rlm_core.environments.lifecycle import LiveSandboxes, Owner, OwnerTags, run_cleanup

Test a plugin's lifecycle with :class:`rlm_core.testing.sandbox_lifecycle_contract.SandboxLifecycleContract`.
"""

from __future__ import annotations

from rlm_core.environments.lifecycle.cleanup import (
    SandboxService,
    cleanup_rows,
    run_blocking,
    run_cleanup,
    run_sdk_cleanup,
)
from rlm_core.environments.lifecycle.errors import quietly, reported_as
from rlm_core.environments.lifecycle.groups import RuntimeGroup, RuntimeGroups
from rlm_core.environments.lifecycle.live import LiveSandboxes, created_or_ended, still_current
from rlm_core.environments.lifecycle.owners import (
    Owner,
    OwnerLabels,
    OwnerTags,
    is_orphan,
    label_safe,
    new_run_id,
    parse_pid,
    pid_alive,
)
from rlm_core.environments.lifecycle.relay import (
    OUTPUT_RELAY,
    TWO_WAY_RELAY,
    Base64Lines,
    encode_input,
    relayed,
)
from rlm_core.environments.lifecycle.relay_stream import RelayedCommandStream
from rlm_core.environments.lifecycle.sdk import configured_key, import_sdk
from rlm_core.environments.lifecycle.streams import ProcessByteStream, StderrTail, exit_status

__all__ = [
    "OUTPUT_RELAY",
    "TWO_WAY_RELAY",
    "Base64Lines",
    "LiveSandboxes",
    "Owner",
    "OwnerLabels",
    "OwnerTags",
    "ProcessByteStream",
    "RelayedCommandStream",
    "RuntimeGroup",
    "RuntimeGroups",
    "SandboxService",
    "StderrTail",
    "cleanup_rows",
    "configured_key",
    "created_or_ended",
    "encode_input",
    "exit_status",
    "import_sdk",
    "is_orphan",
    "label_safe",
    "new_run_id",
    "parse_pid",
    "pid_alive",
    "quietly",
    "relayed",
    "reported_as",
    "run_blocking",
    "run_cleanup",
    "run_sdk_cleanup",
    "still_current",
]
