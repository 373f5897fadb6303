"""Every path ends with the Modal sandbox terminated: close, start errors, timeouts, cancellation, exit.

(The ``modal_cloud`` fixture also fails any test that leaves a sandbox running.)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import modal
import pytest
from modal_fakes import FakeModalCloud
from rlm_modal import transport as modal_transport
from rlm_modal.environment import modal_environment

from rlm_core.errors import SandboxError, SandboxStartError


async def _host(function: str, args: dict[str, Any]) -> Any:
    return "ok"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_dead(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        with_child = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True)
        if with_child.stdout.strip().startswith("Z"):
            return True  # a zombie of ours: dead, not yet reaped
        time.sleep(0.05)
    return False


def test_an_error_while_starting_terminates_the_sandbox(modal_cloud: FakeModalCloud, workdir: str) -> None:
    modal_cloud.fail("make_directory", modal.exception.SandboxFilesystemPermissionError("read-only"))
    environment = modal_environment(workdir=workdir)
    with pytest.raises(SandboxError, match="could not create"):
        asyncio.run(environment.start(_host, {}))
    (state,) = modal_cloud.sandboxes.values()
    assert state.terminated and not _pid_alive(state.main.pid)


def test_a_runtime_that_cannot_start_terminates_the_sandbox(
    modal_cloud: FakeModalCloud, workdir: str
) -> None:
    environment = modal_environment(workdir=workdir, python="python-does-not-exist", start_timeout=10)
    with pytest.raises(SandboxError, match="exited before it was ready"):
        asyncio.run(environment.start(_host, {}))
    assert [state.terminated for state in modal_cloud.sandboxes.values()] == [True]


def test_rejected_credentials_say_how_to_fix_them(modal_cloud: FakeModalCloud, workdir: str) -> None:
    modal_cloud.fail("create", modal.exception.AuthError("Token missing"))
    with pytest.raises(SandboxStartError, match="modal token new") as caught:
        asyncio.run(modal_environment(workdir=workdir).start(_host, {}))
    assert type(caught.value).__name__ == "SandboxStartError"  # the name a user reads
    assert modal_cloud.sandboxes == {}


def test_a_stuck_cell_kills_the_runtime_and_close_terminates(
    modal_cloud: FakeModalCloud, workdir: str
) -> None:
    environment = modal_environment(workdir=workdir, kill_grace=1)

    async def scenario() -> None:
        await environment.start(_host, {})
        try:
            first = await environment.execute("import os\nprint(os.getpid())")
            runtime_pid = int(first.stdout)
            stuck = await environment.execute("import time\ntime.sleep(120)", timeout=1)
            assert stuck.timed_out and stuck.state_lost
            assert _wait_dead(runtime_pid)
            after = await environment.execute("print('alive')")
            assert after.stdout == "alive\n"
        finally:
            await environment.close()
            await environment.close()  # twice: a no-op

    asyncio.run(scenario())
    (state,) = modal_cloud.sandboxes.values()
    assert state.terminated
    assert all(process.returncode is not None for process in state.processes)
    assert [name for name, _ in modal_cloud.calls].count("terminate") == 1


def test_cancelled_while_creating_terminates_the_late_sandbox(
    modal_cloud: FakeModalCloud, workdir: str
) -> None:
    modal_cloud.create_delay = 0.5
    environment = modal_environment(workdir=workdir)

    async def scenario() -> None:
        starting = asyncio.create_task(environment.start(_host, {}))
        await asyncio.sleep(0.1)
        starting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await starting

    asyncio.run(scenario())
    (state,) = modal_cloud.sandboxes.values()
    assert state.terminated


def test_cancelled_during_a_cell_then_closed(modal_cloud: FakeModalCloud, workdir: str) -> None:
    environment = modal_environment(workdir=workdir)

    async def scenario() -> None:
        await environment.start(_host, {})
        cell = asyncio.create_task(environment.execute("import time\ntime.sleep(60)"))
        await asyncio.sleep(0.5)
        cell.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cell
        await environment.close()

    asyncio.run(scenario())
    (state,) = modal_cloud.sandboxes.values()
    assert state.terminated and not _pid_alive(state.main.pid)


def test_sandboxes_never_closed_are_terminated_at_exit(modal_cloud: FakeModalCloud, workdir: str) -> None:
    environment = modal_environment(workdir=workdir)

    async def scenario() -> None:
        await environment.start(_host, {})
        (state,) = modal_cloud.sandboxes.values()
        assert not state.terminated
        modal_transport.terminate_live_sandboxes()  # what the atexit hook runs
        assert state.terminated and not _pid_alive(state.main.pid)
        await environment.close()  # only to release this test's pipes before its loop ends

    asyncio.run(scenario())


_OWNER_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    sys.path.insert(0, {tests!r})
    from modal_fakes import FakeModalCloud
    cloud = FakeModalCloud()
    cloud.install_for_process()
    from rlm_modal.environment import modal_environment

    async def host(function, args):
        return "ok"

    async def main():
        environment = modal_environment(workdir={workdir!r})
        await environment.start(host, {{}})
        (state,) = cloud.sandboxes.values()
        print(json.dumps({{"main_pid": state.main.pid}}), flush=True)
        await environment.execute("import time\\ntime.sleep(60)")  # never closed: Ctrl-C comes first

    asyncio.run(main())
    """
)


def test_ctrl_c_in_a_real_process_terminates_its_sandbox(workdir: str) -> None:
    script = _OWNER_SCRIPT.format(tests=str(Path(__file__).parent), workdir=workdir)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    main_pid = 0
    try:
        assert owner.stdout is not None
        main_pid = json.loads(owner.stdout.readline())["main_pid"]
        time.sleep(0.5)
        owner.send_signal(signal.SIGINT)
        owner.wait(timeout=60)
        assert owner.returncode != 0  # it died of the KeyboardInterrupt
        assert _wait_dead(main_pid), "the sandbox outlived its owner"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        if main_pid and _pid_alive(main_pid):
            os.kill(main_pid, signal.SIGKILL)
        if owner.stdout is not None:
            owner.stdout.close()


def test_a_restart_also_ends_what_the_cells_started(modal_cloud: FakeModalCloud, workdir: str) -> None:
    environment = modal_environment(workdir=workdir, kill_grace=1)

    async def scenario() -> None:
        await environment.start(_host, {})
        try:
            started = await environment.execute(
                "import subprocess\nchild = subprocess.Popen(['sleep', '300'])\nprint(child.pid)"
            )
            grandchild = int(started.stdout)
            stuck = await environment.execute("import time\ntime.sleep(120)", timeout=1)
            assert stuck.state_lost
            assert _wait_dead(grandchild), "a process started by a cell outlived its runtime"
        finally:
            await environment.close()

    asyncio.run(scenario())
