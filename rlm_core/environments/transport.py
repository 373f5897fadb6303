"""The sandbox transport contract: what a sandbox plugin supplies so the core can run its REPL runtime there.

A transport provisions one sandbox, puts files into it and opens a byte stream to a process inside
it. Everything above that (the framed protocol, sub-calls, timeouts, restarts, contexts) is done
once by :class:`rlm_core.environments.sandbox.SandboxEnvironment`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable


@runtime_checkable
class ByteStream(Protocol):
    """A duplex byte stream to one process in the sandbox: its stdin for writing, its stdout for reading.

    The process's stderr is not part of the stream; a transport keeps its tail for ``diagnostics``.
    """

    async def read(self, max_bytes: int) -> bytes:
        """Return at least 1 and at most ``max_bytes`` bytes of the process's stdout; ``b""`` at EOF.

        EOF means the process exited or the sandbox went away; it is not an error.
        """
        ...

    async def write(self, data: bytes) -> None:
        """Write all of ``data`` to the process's stdin (and wait until the transport took it).

        Raises ``ConnectionError`` (or an ``OSError``) when the process is gone.
        """
        ...

    async def close(self) -> None:
        """End the process (kill it and everything it started, if still running) and release the stream.

        Safe to call twice and after EOF. Must not raise for a process that is already gone.
        """
        ...

    def diagnostics(self) -> str:
        """What is known about why the process ended: exit status, the tail of its stderr. May be ""."""
        ...


@runtime_checkable
class Transport(Protocol):
    """One sandbox (a container, a child process, a cloud VM) that can hold files and run processes.

    Attributes the core reads:

    - ``workdir``: an absolute directory inside the sandbox that ``put_file`` may write into and
      processes may read; the core puts the runtime script and context files there.
    - ``python``: the Python interpreter (>= 3.8) to run inside the sandbox, as argv[0]
      (for example ``"python3"``).

    A transport may also implement :class:`ChunkedUpload` (``put_file_chunks``); the core then streams
    large contexts through it instead of building them in memory for ``put_file``.

    Lifecycle: ``start()`` once, then any number of ``put_file``/``open_stream``; ``close()`` at the
    end. If the sandbox itself died (``open_stream`` fails), the core calls ``close()`` and then
    ``start()`` again to provision a fresh one, so ``start`` must work after ``close``.
    """

    workdir: str
    python: str

    async def start(self) -> None:
        """Provision the sandbox and wait until it can take files and run processes.

        Raise ``rlm_core.errors.SandboxError`` with a message that says what is missing (no engine,
        no image, no credentials) and how to fix it.
        """
        ...

    async def put_file(self, path: str, data: bytes) -> None:
        """Create or replace the file at absolute ``path`` (inside ``workdir``) with ``data``.

        Contexts can be hundreds of megabytes: stream ``data`` (it may be a memoryview's bytes) and
        avoid extra copies.
        """
        ...

    async def open_stream(self, argv: list[str]) -> ByteStream:
        """Start ``argv`` inside the sandbox, with ``workdir`` as its working directory and no host
        environment variables, and return a duplex stream to its stdin/stdout."""
        ...

    async def close(self) -> None:
        """Tear the sandbox down and release everything; safe to call twice, never raises for a
        sandbox that is already gone."""
        ...

    def describe(self) -> str:
        """A short human description for messages, e.g. ``"docker container 3f2a... (python:3.11-slim)"``."""
        ...


@runtime_checkable
class ChunkedUpload(Protocol):
    """Optional addition to :class:`Transport`: write a file from chunks, so a 1 GB context costs the
    host a few chunks of memory instead of a 1 GB ``bytes``. Transports without it keep working; the
    core then joins the chunks and calls ``put_file``.
    """

    async def put_file_chunks(self, path: str, chunks: Iterable[bytes], size: int | None = None) -> None:
        """Create or replace the file at absolute ``path`` (inside ``workdir``) with the concatenated chunks.

        ``chunks`` is a synchronous iterable whose items are produced on demand (encoding them is CPU
        work: consume it in a worker thread, e.g. ``asyncio.to_thread``, not on the event loop). It can
        be iterated more than once, each pass yielding the same bytes, so a transport that must know
        the total first (a tar header, a Content-Length) may count in a first pass. ``size``, when not
        None, is that total already. Exceptions raised while iterating (for example
        ``rlm_core.errors.ConfigurationError`` for a context that cannot be encoded) must propagate
        unchanged; the partial file may be left behind.
        """
        ...
