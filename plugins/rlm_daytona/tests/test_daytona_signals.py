"""The owner process ended by SIGTERM or SIGINT still deletes its Daytona sandbox: the lifecycle's signal
guard runs the SDK's blocking delete before the signal ends the process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlm_core.environments.lifecycle import pid_alive

# An owner that starts an environment on the fake cloud (installed in its own process), reports the
# sandbox's main pid, then waits for a signal with its runtime running.
OWNER = """
import asyncio, sys
from daytona_fakes import FakeDaytonaCloud
cloud = FakeDaytonaCloud()
cloud.install_for_process()
from rlm_daytona.environment import daytona_environment

async def host(function, args):
    return "ok"

async def main():
    environment = daytona_environment(workdir=sys.argv[1])
    await environment.start(host, {})
    assert (await environment.execute("print(1)")).stdout == "1\\n"
    print(cloud.sandboxes[environment.transport.sandbox_id].main.pid, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_owner_deletes_its_sandbox(signum: int, tmp_path: Path) -> None:
    tests = str(Path(__file__).parent)
    env = {
        **os.environ,
        "DAYTONA_API_KEY": "dtn_" + "k" * 40,
        "PYTHONPATH": os.pathsep.join([tests, *sys.path]),
    }
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tmp_path / "rlm")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # SIGINT must reach the interpreter's own handler: a background job inherits it ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline().strip()
        assert line.isdigit(), owner.communicate(timeout=30)
        sandbox_pid = int(line)
        assert pid_alive(sandbox_pid)
        owner.send_signal(signum)
        _, stderr = owner.communicate(timeout=60)
        assert owner.returncode == -signum, stderr  # the signal, handed on once the sandbox was deleted
        deadline = time.monotonic() + 30
        while pid_alive(sandbox_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(sandbox_pid), "the sandbox outlived its signalled owner"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.communicate()
