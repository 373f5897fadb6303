"""A one-file tar archive produced on the fly, for engines that take files as tar streams (Docker's
``put_archive``): a 1 GB context costs the host a chunk of memory, not a 1 GB archive."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable

from rlm_core.errors import SandboxError


class TarStream(io.RawIOBase):
    """A one-file tar archive read on the fly: header, the data chunks as they come, padding, end marker.

    The chunks are pulled only as the engine reads, so no part of the file is held beyond one chunk.
    """

    def __init__(self, name: str, chunks: Iterable[bytes], size: int, parents: list[str]) -> None:
        head = b""
        for parent in parents:
            info = tarfile.TarInfo(parent)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            head += info.tobuf(format=tarfile.PAX_FORMAT)
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o644
        head += info.tobuf(format=tarfile.PAX_FORMAT)
        padding = (-size) % tarfile.BLOCKSIZE
        self._name = name
        self._size = size
        self._chunks = iter(chunks)
        self._data_left = size
        self._current = memoryview(head)
        self._tail: memoryview | None = memoryview(b"\0" * (padding + 2 * tarfile.BLOCKSIZE))
        self._length = len(head) + size + len(self._tail)

    def __len__(self) -> int:
        return self._length

    def readable(self) -> bool:
        return True

    def _next_part(self) -> bool:
        """Move on to the next chunk of data (or the tail); False at the end of the archive."""
        if self._data_left:
            chunk = next(self._chunks, None)
            if chunk is None or len(chunk) > self._data_left:
                raise SandboxError(
                    f"the data for {self._name} changed while it was sent (expected {self._size} bytes); "
                    "a transport must be given the same chunks on every pass"
                )
            self._data_left -= len(chunk)
            self._current = memoryview(chunk)
            return True
        if self._tail is not None:
            self._current, self._tail = self._tail, None
            return True
        return False

    def read(self, size: int = -1) -> bytes:
        while not len(self._current):
            if not self._next_part():
                return b""
        part = self._current
        take = len(part) if size is None or size < 0 else min(size, len(part), 1 << 20)
        self._current = part[take:]
        return bytes(part[:take])
