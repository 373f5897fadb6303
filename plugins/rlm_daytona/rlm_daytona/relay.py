"""The runtime's byte stream carried over Daytona's text-only session API, both ways.

A session command takes its input as text (``send_session_command_input(data: str)``) and its logs
come back as text with ``\\x01\\x01\\x01``/``\\x02\\x02\\x02`` markers between stdout and stderr: the
runtime's binary frames (4-byte length headers) fit neither. A stdlib relay, run with the sandbox's
own Python, starts the runtime with stderr inherited, decodes base64 lines arriving on its stdin into
the runtime's stdin, and writes each chunk of the runtime's stdout as one base64 line. The host side
is :func:`encode_input` and :class:`Base64Lines`.
"""

from __future__ import annotations

import base64
import binascii

MARK = "rlm:"  # begins every line the relay writes
# Python >= 3.8, stdlib only, like the runtime. Exits with the runtime's status (128 + signal).
RELAY_SOURCE = """\
import base64, os, subprocess, sys, threading
child = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

def feed():
    try:
        for line in sys.stdin.buffer:
            child.stdin.write(base64.b64decode(line))
            child.stdin.flush()
    except (OSError, ValueError):
        pass
    try:
        child.stdin.close()
    except OSError:
        pass

threading.Thread(target=feed, daemon=True).start()
os.write(1, b"\\n")
while True:
    chunk = os.read(child.stdout.fileno(), 1 << 16)
    if not chunk:
        break
    line = memoryview(b"rlm:" + base64.b64encode(chunk) + b"\\n")
    while line:
        line = line[os.write(1, line):]
code = child.wait()
sys.stdout.flush()
os._exit(128 - code if code < 0 else code)
"""


def relayed(python: str, argv: list[str]) -> list[str]:
    """The command line that runs ``argv`` behind the relay, which runs on ``python``."""
    return [python, "-c", RELAY_SOURCE, *argv]


def encode_input(data: bytes) -> str:
    """What the host sends for ``data``: one base64 line the relay decodes."""
    return base64.b64encode(data).decode("ascii") + "\n"


class Base64Lines:
    """The runtime's stdout as it arrives (text, split anywhere) back into bytes.

    Lines without the relay's mark are kept in ``stray`` (a login shell's greeting, say), not decoded.
    """

    def __init__(self) -> None:
        self._pending = ""
        self.stray: list[str] = []

    def feed(self, text: str) -> bytes:
        """The bytes of every line completed by ``text``; a partial line waits for the rest."""
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        data = bytearray()
        for line in (line.rstrip("\r") for line in lines):
            if not line.startswith(MARK):
                if line.strip():
                    self.stray.append(line)
                continue
            try:
                data += base64.b64decode(line[len(MARK) :], validate=True)
            except binascii.Error as exc:
                raise ConnectionError(f"the runtime's relayed stdout is corrupt: {exc}") from exc
        return bytes(data)

    def finish(self) -> None:
        """At the end of the output: an unfinished line is not the relay's (its lines end), so it is stray."""
        if self._pending.strip():
            self.stray.append(self._pending)
        self._pending = ""
