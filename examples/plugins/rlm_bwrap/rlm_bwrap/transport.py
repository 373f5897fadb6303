"""A sandbox transport that runs each process under bubblewrap: no network, own pids, read-only root."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from asyncio.subprocess import PIPE
from collections.abc import Sequence
from pathlib import Path

import attrs

from rlm_bwrap.cleanup import end_workdir, workdir_prefix
from rlm_core.environments.lifecycle import LiveSandboxes, StderrTail
from rlm_core.errors import SandboxError

# Host directories replaced by an empty read-only tmpfs: home directories, sockets, temporary files.
HIDDEN_PATHS = ("/tmp", "/var/tmp", "/root", "/home", "/run")
ISOLATION = ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--cap-drop", "ALL"]
# The workdirs this process holds: at interpreter exit their processes are stopped and they are removed.
LIVE: LiveSandboxes[str] = LiveSandboxes("bwrap", end_workdir)


class BwrapStream:
    """The ``ByteStream`` to one sandboxed process (and whatever it starts, all in one pid namespace)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdin and process.stdout and process.stderr, "opened with three pipes"
        self.process, self.stdin, self.stdout = process, process.stdin, process.stdout
        self.stderr = StderrTail()  # drained as it comes: a full stderr pipe would block the process
        self.stderr.drain(process.stderr)

    async def read(self, max_bytes: int) -> bytes:
        return await self.stdout.read(max_bytes)

    async def write(self, data: bytes) -> None:  # a gone process raises BrokenPipeError, an OSError
        self.stdin.write(data)
        await self.stdin.drain()

    async def close(self) -> None:
        # bwrap's child is the pid namespace's init: when it dies the kernel ends every process in the
        # namespace before bwrap can see it exit, so once bwrap is reaped nothing the code started is left.
        with contextlib.suppress(OSError, TimeoutError):
            pid = self.process.pid
            for init in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
                os.kill(int(init), signal.SIGKILL)
            await asyncio.wait_for(self.process.wait(), timeout=5.0)
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()  # bwrap itself, if it is still there
        await self.process.wait()
        await self.stderr.finish()

    def diagnostics(self) -> str:
        status = "" if self.process.returncode is None else f"exit status {self.process.returncode}"
        return "; ".join(filter(None, [status, self.stderr.summary()]))


@attrs.define
class BwrapTransport:
    """One private writable workdir; every process sees the host's root read-only and nothing else."""

    python: str = "python3"
    bwrap: str = "bwrap"
    env: dict[str, str] = attrs.field(factory=dict, converter=dict)
    hidden_paths: Sequence[str] = HIDDEN_PATHS
    workdir: str = attrs.field(default="", init=False)
    _streams: list[BwrapStream] = attrs.field(factory=list, init=False)

    def describe(self) -> str:
        return f"bwrap sandbox ({self.workdir or 'not started'})"

    async def start(self) -> None:
        if shutil.which(self.bwrap) is None:
            raise SandboxError(
                f"bubblewrap ({self.bwrap!r}) is not installed; install it (Debian/Ubuntu: "
                "apt-get install bubblewrap) or pass bwrap= with its path"
            )
        self.workdir = tempfile.mkdtemp(prefix=workdir_prefix())  # names its owner for `rlm cleanup`
        LIVE.add(self.workdir, self.workdir)  # ended at interpreter exit if never closed

    async def put_file(self, path: str, data: bytes) -> None:
        if os.path.dirname(os.path.realpath(path)) != os.path.realpath(self.workdir or "/nowhere"):
            raise SandboxError(f"put_file path {path!r} is not directly inside the workdir {self.workdir!r}")
        await asyncio.to_thread(Path(path).write_bytes, data)

    def command(self, argv: list[str]) -> list[str]:
        """Hidden paths become empty tmpfs, the workdir is bound over them (same path), then they turn ro."""
        hidden = [path for path in self.hidden_paths if os.path.isdir(path)]
        command = [self.bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        command += [arg for path in hidden for arg in ("--tmpfs", path)]
        command += ["--bind", self.workdir, self.workdir]
        command += [arg for path in hidden for arg in ("--remount-ro", path)]
        command += [*ISOLATION, "--die-with-parent", "--new-session", "--clearenv", "--chdir", self.workdir]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": self.workdir, "TMPDIR": self.workdir}
        for name, value in {**env, "LANG": "C.UTF-8", **self.env}.items():
            command += ["--setenv", name, value]
        return [*command, "--", *argv]

    async def open_stream(self, argv: list[str]) -> BwrapStream:
        process = await asyncio.create_subprocess_exec(
            *self.command(argv), stdin=PIPE, stdout=PIPE, stderr=PIPE
        )
        self._streams.append(BwrapStream(process))
        return self._streams[-1]

    async def close(self) -> None:
        streams, self._streams = self._streams, []
        for stream in streams:
            await stream.close()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            LIVE.discard(self.workdir)
            self.workdir = ""
