"""One batch job per output file: ``OutputLock`` holds ``<output>.lock`` for the job's whole life.

The lock file is held with ``flock`` (taken atomically by the kernel and dropped by it when its
holder dies, however it dies) and names its holder in JSON for the error a second job gets. A file
left behind by a killed holder on this host is taken over; one from another host is never taken
over, since nothing here can tell whether that job still runs. POSIX only: without ``fcntl`` the
holder record alone decides, which is not atomic.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from types import TracebackType

from rlm_core.batch.holder import Holder
from rlm_core.errors import RLMError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("rlm_core.batch")

# A holder writes its record right after taking the lock; a reader that finds the lock taken but
# no record yet (or the file just being replaced by a finishing job) looks again for this long.
_SETTLE_SECONDS = 2.0
_SETTLE_POLL = 0.02


class BatchLockedError(RLMError):
    """Another batch job holds the output file. ``holder`` is who (None when it did not say),
    ``lock_path`` the lock file."""

    def __init__(self, message: str, *, lock_path: Path, holder: Holder | None) -> None:
        super().__init__(message)
        self.lock_path = lock_path
        self.holder = holder


def lock_path_for(output: str | Path) -> Path:
    """The lock file of an output: beside it, so every path spelling of the output finds the same one."""
    output = Path(output).resolve()
    return output.with_name(output.name + ".lock")


class OutputLock:
    """Holds a batch output for one job: ``acquire()`` (or ``with``) raises ``BatchLockedError``
    when another live job holds it; ``release()`` removes the lock file."""

    def __init__(self, output: str | Path) -> None:
        self.output = Path(output)
        self.path = lock_path_for(output)
        self.holder: Holder | None = None  # this job, once it holds the output
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this OutputLock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.holder = Holder.current()
        deadline = time.monotonic() + _SETTLE_SECONDS
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                outcome = self._try(fd, settled=time.monotonic() >= deadline)
            except BaseException:
                os.close(fd)
                raise
            if outcome == "held":
                self._fd = fd
                return
            os.close(fd)
            if outcome == "wait":
                time.sleep(_SETTLE_POLL)
            # "again": the path was replaced under us (a job ending or starting); look at the new file

    def _try(self, fd: int, settled: bool) -> str:
        """One attempt on an open lock file: "held", "again", "wait", or raises BatchLockedError."""
        locked = _flock(fd, self.path)
        if locked is False:
            holder = Holder.parse(_read(fd))
            if not settled and (holder is None or (holder.on_this_host() and holder.running() is False)):
                return "wait"  # just taken, its record not yet written (or being replaced)
            raise self._refusal(holder)
        if not _same_file(fd, self.path):
            return "again"  # a finishing job unlinked it after we opened it: the lock is on a dead file
        previous = Holder.parse(_read(fd))
        if previous is not None:
            if not previous.on_this_host():
                raise self._refusal(previous)
            running = previous.running()
            # The OS lock is ours, so its holder died; but a holder proven alive (or, with no OS lock
            # to go by, any live pid) means a filesystem where locks do not reach: refuse, never run twice.
            if running or (running is None and locked is None):
                raise self._refusal(previous)
            logger.warning(
                "%s: taking over the lock file %s; its holder (%s) is no longer running",
                self.output,
                self.path,
                previous.describe(),
            )
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        assert self.holder is not None
        os.write(fd, self.holder.to_json().encode("utf-8"))
        return "held"

    def _refusal(self, holder: Holder | None) -> BatchLockedError:
        other_output = "or give this job another output file"
        where = f"(lock file {self.path})"
        if holder is None:
            message = (
                f"{self.output} is in use by another batch job {where}; it has not said who it is. "
                f"Wait for it to finish, stop it, {other_output}."
            )
        elif not holder.on_this_host():
            message = (
                f"{self.output} is held by a batch job on another host: {holder.describe()} {where}. "
                f"A lock from another host is never taken over: wait for that job to finish, stop it, "
                f"{other_output}. If no job runs there any more, delete {self.path} and run again."
            )
        elif holder.pid == os.getpid():
            message = (
                f"{self.output} is in use by another batch job in this process: {holder.describe()} "
                f"{where}. Wait for it to finish {other_output}."
            )
        elif holder.running() is False:
            message = (
                f"{self.output} is in use: its batch job, {holder.describe()}, has exited, but a "
                f"process it started still has the lock file open {where}. Stop that process, "
                f"{other_output}."
            )
        else:
            message = (
                f"{self.output} is in use by another batch job: {holder.describe()} {where}. "
                f"Wait for it to finish, stop it (kill {holder.pid}), {other_output}."
            )
        return BatchLockedError(message, lock_path=self.path, holder=holder)

    def release(self) -> None:
        """Remove the lock file and let go; safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _same_file(fd, self.path):
                # Emptied first: should the unlink fail, the file left behind names no one.
                os.ftruncate(fd, 0)
                self.path.unlink()
        except OSError as exc:
            logger.warning("%s: could not remove the lock file %s: %s", self.output, self.path, exc)
        finally:
            os.close(fd)  # drops the OS lock

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()


def _flock(fd: int, path: Path) -> bool | None:
    """True when the OS lock is ours, False when another holds it, None when there is none to take
    (no ``fcntl``, or a filesystem that refuses locks)."""
    if fcntl is None:
        logger.warning("cannot lock %s without fcntl (not POSIX); going by its holder record only", path)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        logger.warning("cannot lock %s on this filesystem (%s); going by its holder record only", path, exc)
        return None
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 65536).decode("utf-8", errors="replace")
