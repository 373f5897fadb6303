"""The runtime's stdout carried over a text-only command API: a stdlib relay in the sandbox writes
each chunk of it as one marked base64 line, and :class:`Base64Lines` turns the lines back into bytes.

Cloud SDKs hand a command's output over as decoded text, which would mangle the runtime's binary
frame headers. :data:`OUTPUT_RELAY` relays stdout only (for an API whose stdin takes bytes);
:data:`TWO_WAY_RELAY` also decodes base64 lines arriving on its stdin (:func:`encode_input`) into the
runtime's stdin, for an API whose input is text too.
"""

from __future__ import annotations

import base64
import binascii

MARK = "rlm:"  # begins every line a relay writes

# The relays run on the sandbox's own Python: >= 3.8, stdlib only, like the runtime. Both start the
# runtime with stderr inherited and exit with its status (128 + signal).
_COPY_STDOUT = """\
os.write(1, b"\\n")
while True:
    chunk = os.read(child.stdout.fileno(), 1 << 16)
    if not chunk:
        break
    line = memoryview(b"rlm:" + base64.b64encode(chunk) + b"\\n")
    while line:
        line = line[os.write(1, line):]
code = child.wait()
"""

OUTPUT_RELAY = (
    """\
import base64, os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)
"""
    + _COPY_STDOUT
    + """\
sys.exit(128 - code if code < 0 else code)
"""
)

# os._exit: the feeding thread may still be blocked reading stdin, which an orderly interpreter exit
# could wait on.
TWO_WAY_RELAY = (
    """\
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
"""
    + _COPY_STDOUT
    + """\
sys.stdout.flush()
os._exit(128 - code if code < 0 else code)
"""
)


def relayed(relay: str, python: str, argv: list[str]) -> list[str]:
    """The command line that runs ``argv`` behind ``relay`` (one of the relays above) on ``python``."""
    return [python, "-c", relay, *argv]


def encode_input(data: bytes) -> str:
    """What the host sends :data:`TWO_WAY_RELAY` for ``data``: one base64 line it decodes."""
    return base64.b64encode(data).decode("ascii") + "\n"


class Base64Lines:
    """The host side: the relay's output as it arrives (text, split anywhere), back into bytes.

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
