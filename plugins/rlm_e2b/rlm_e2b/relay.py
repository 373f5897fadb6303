"""The runtime's stdout made text-safe for E2B: the SDK hands a command's stdout over as UTF-8 text
(decoded with replacement), which would mangle the runtime's binary frame headers.

In the sandbox, a stdlib relay (run with the sandbox's own Python) starts the runtime with stdin and
stderr inherited and writes each chunk of its stdout as one base64 line; :class:`Base64Lines` turns
the lines back into bytes on the host. stdin needs nothing: ``send_stdin`` carries bytes unchanged.
"""

from __future__ import annotations

import base64
import binascii

MARK = "rlm:"  # begins every line the relay writes
# Python >= 3.8, stdlib only, like the runtime. Exits with the runtime's status (128 + signal).
RELAY_SOURCE = """\
import base64, os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)
os.write(1, b"\\n")
while True:
    chunk = os.read(child.stdout.fileno(), 1 << 16)
    if not chunk:
        break
    line = memoryview(b"rlm:" + base64.b64encode(chunk) + b"\\n")
    while line:
        line = line[os.write(1, line):]
code = child.wait()
sys.exit(128 - code if code < 0 else code)
"""


def relayed(python: str, argv: list[str]) -> list[str]:
    """The command line that runs ``argv`` behind the relay, which runs on ``python``."""
    return [python, "-c", RELAY_SOURCE, *argv]


class Base64Lines:
    """The host side: text chunks in (split anywhere), the relayed bytes out.

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
