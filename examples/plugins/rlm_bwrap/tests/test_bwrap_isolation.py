"""What the bwrap sandbox promises, checked against the real kernel: no network, no host files to write,
no host environment, no host processes, and nothing left running after close."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rlm_bwrap import HIDDEN_PATHS, BwrapTransport, make_environment

from rlm_core.environments import SandboxEnvironment
from rlm_core.testing.environment_contract import RecordingHost

pytestmark = pytest.mark.usefixtures("require_bwrap")


def run_cells(*cells: str, env: SandboxEnvironment | None = None) -> list[str]:
    """Run cells in a fresh bwrap environment and return their stdout (a failed cell fails the test)."""

    async def main() -> list[str]:
        environment = env or make_environment(timeout=30)
        try:
            await environment.start(RecordingHost(), {})
            outputs = []
            for cell in cells:
                result = await environment.execute(cell)
                assert result.error is None, result.error
                outputs.append(result.stdout.strip())
            return outputs
        finally:
            await environment.close()

    return asyncio.run(main())


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A real TCP server on the host's 127.0.0.1 that accepts (and closes) connections."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                server.accept()[0].close()
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def test_no_network_even_to_the_hosts_loopback(listening_port: int) -> None:
    socket.create_connection(("127.0.0.1", listening_port), timeout=2).close()  # the host can connect
    (output,) = run_cells(
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {listening_port}), timeout=2)\n"
        "    print('connected')\n"
        "except OSError as exc:\n"
        "    print(type(exc).__name__)\n"
        "print(sorted(name for _, name in socket.if_nameindex()))"
    )
    assert output.splitlines() == ["ConnectionRefusedError", "['lo']"]


def test_writes_outside_the_workdir_fail(tmp_path: Path) -> None:
    repository_dir = Path(__file__).resolve().parent
    targets = [repository_dir / "written-by-sandbox.txt", Path("/etc/written-by-sandbox"), tmp_path / "x"]
    probe = (
        "import errno, os\n"
        f"for target in {[str(t) for t in targets]!r}:\n"
        "    try:\n"
        "        open(target, 'w').write('escaped')\n"
        "        print('wrote', target)\n"
        "    except OSError as exc:\n"
        "        print(errno.errorcode[exc.errno])\n"
        "open('inside.txt', 'w').write('kept')\n"
        "print(os.getcwd())"
    )
    transport = BwrapTransport()
    output, read_back = run_cells(
        probe, "print(open('inside.txt').read())", env=SandboxEnvironment(transport)
    )
    *errors, workdir = output.splitlines()
    # Host paths are read-only; the host's temporary files are hidden behind an empty read-only tmpfs,
    # so the test's own temporary directory does not even exist in there (nor does a checkout that
    # lives under one of the hidden paths).
    under_hidden = any(repository_dir.resolve().is_relative_to(hidden) for hidden in HIDDEN_PATHS)
    assert errors == ["ENOENT" if under_hidden else "EROFS", "EROFS", "ENOENT"]
    assert read_back == "kept"
    assert not any(target.exists() for target in targets)
    assert workdir.startswith("/") and not Path(workdir).exists()  # close() removed the workdir


def test_host_environment_and_hidden_files_are_not_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-" + "bwrapsecret" + "0123456789abcdef"
    monkeypatch.setenv("RLM_BWRAP_TEST_API_KEY", secret)
    monkeypatch.setenv("RLM_BWRAP_HARMLESS_SETTING", "host-only")
    secret_file = tmp_path / "credentials"
    secret_file.write_text(secret)
    environment = make_environment(timeout=30, env={"CHOSEN": "passed on purpose"})
    (output,) = run_cells(
        "import os\n"
        "print(sorted(os.environ))\n"
        "print(os.environ['CHOSEN'])\n"
        f"print({secret!r} in open('/proc/self/environ').read())\n"
        f"print(os.path.exists({str(secret_file)!r}))",
        env=environment,
    )
    names, chosen, in_proc, file_visible = output.splitlines()
    # Only what the sandbox needs, plus what the user passed; LC_CTYPE is Python's own locale coercion.
    assert set(eval(names)) <= {"PATH", "HOME", "TMPDIR", "LANG", "LC_CTYPE", "PWD", "CHOSEN"}
    assert (chosen, in_proc, file_visible) == ("passed on purpose", "False", "False")


def test_own_pid_namespace_hides_host_processes() -> None:
    (output,) = run_cells(
        "import os\n"
        "pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        "print(os.getpid(), max(pids), len(pids))\n"
        "try:\n"
        f"    os.kill({os.getpid()}, 0)\n"
        "    print('host pid visible')\n"
        "except ProcessLookupError:\n"
        "    print('host pid not found')"
    )
    first, verdict = output.splitlines()
    own_pid, highest, count = map(int, first.split())
    assert own_pid <= 3 and highest < 10 and count < 5  # bwrap's init, the runtime, little else
    assert verdict == "host pid not found"


def _host_processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:
            continue  # the process ended while we looked
    return found


def test_close_ends_every_process_the_cells_started() -> None:
    marker = f"4242.{os.getpid()}"  # a sleep length nothing else on this machine uses
    transport = BwrapTransport()

    async def main() -> None:
        environment = SandboxEnvironment(transport, timeout=30)
        try:
            await environment.start(RecordingHost(), {})
            started = await environment.execute(
                f"import subprocess\nchild = subprocess.Popen(['sleep', '{marker}'])\nprint(child.pid)"
            )
            assert started.error is None, started.error
            deadline = time.monotonic() + 10  # the host sees it with a small delay
            while not _host_processes_with(marker) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert _host_processes_with(marker), "the background process should be running before close"
        finally:
            await environment.close()

    asyncio.run(main())
    assert _host_processes_with(marker) == []  # at once: close() returns only when the namespace is empty
