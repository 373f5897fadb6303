"""The runtime as the leader of its own process group, its pid in a file: for sandboxes whose process
handle cannot signal (a container exec, a cloud SDK), ending the group from inside the sandbox ends
the runtime and whatever its cells started."""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import shlex
from collections.abc import Awaitable, Callable

# How long a process may take to report its exit once it was killed.
_WAIT_AFTER_KILL = 5.0


class RuntimeGroups:
    """The runtime processes of one sandbox, numbered, so each has a pidfile of its own in ``workdir``
    (a restarted runtime must not kill its successor's group)."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.started = 0

    def next(self) -> RuntimeGroup:
        self.started += 1
        return RuntimeGroup(self.workdir, self.started)


class RuntimeGroup:
    """One runtime process: ``command(argv)`` starts it so that its pid lands in ``pidfile`` (sh
    writes its own pid, then becomes the runtime with ``exec``; the runtime makes itself a group
    leader), and ``kill_script()`` is the shell line that SIGKILLs that group."""

    def __init__(self, workdir: str, number: int) -> None:
        self.pidfile = posixpath.join(workdir, f"runtime-{number}.pid")

    def command(self, argv: list[str]) -> list[str]:
        return ["sh", "-c", f'echo $$ > {shlex.quote(self.pidfile)} && exec "$@"', "rlm-runtime", *argv]

    def kill_script(self) -> str:
        """Quiet when the pidfile, the process or the sandbox is gone."""
        return f'p=$(cat {shlex.quote(self.pidfile)} 2>/dev/null) && kill -9 -"$p" "$p" 2>/dev/null; true'

    async def end(
        self, wait: Callable[[], Awaitable[int | None]], kill: Callable[[str], Awaitable[None]], grace: float
    ) -> int | None:
        """Give the runtime ``grace`` seconds to exit by itself (after the core's ``shutdown``), then
        kill its group with ``kill(kill_script())`` run in the sandbox; its exit code, if it says."""
        code = None
        with contextlib.suppress(Exception):
            code = await asyncio.wait_for(wait(), grace)
        with contextlib.suppress(Exception):
            await kill(self.kill_script())
        if code is None:
            with contextlib.suppress(Exception):
                code = await asyncio.wait_for(wait(), _WAIT_AFTER_KILL)
        return code
