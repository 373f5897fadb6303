"""A check for a sandbox plugin whose sandboxes must not outlive an owner ended by SIGTERM or SIGINT:
the lifecycle's signal guard ends them before the signal ends the process. Usage::

    from rlm_core.testing.signalled_owner import check_signalled_owner_ends_its_sandbox

    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
    def test_a_signalled_owner_ends_its_sandbox(signum, tmp_path):
        check_signalled_owner_ends_its_sandbox(
            signum, "my_fakes:signalled_owner", str(tmp_path / "rlm"),
            env={"MY_API_KEY": "..."}, path=[str(Path(__file__).parent)],
        )

The owner is a process of its own (a signal to the test's process would end the test run), so the
plugin names its factory as ``"module:function"``: called there with the working directory, it
returns an unstarted environment and a callable that, once the sandbox has started, gives the pid
of a process that lives exactly as long as the sandbox (a :class:`~rlm_core.testing.local_cloud.
LocalSandbox`'s ``main``, say), which is how this process sees the sandbox end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

from rlm_core.environments.lifecycle.owners import pid_alive

OWNER_TIMEOUT = 60.0
SANDBOX_END_TIMEOUT = 30.0

# The owner: builds the environment with the plugin's factory, starts it, runs a cell, reports the
# sandbox's pid, then waits for the signal with its runtime running.
OWNER = """
import asyncio, importlib, sys
module, _, name = sys.argv[1].partition(":")
factory = getattr(importlib.import_module(module), name)

async def host(function, args):
    return "ok"

async def main():
    environment, sandbox_pid = factory(sys.argv[2])
    await environment.start(host, {})
    assert (await environment.execute("print(1)")).stdout == "1\\n"
    print(sandbox_pid(), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def check_signalled_owner_ends_its_sandbox(
    signum: int, factory: str, workdir: str, *, env: Mapping[str, str] | None = None, path: Sequence[str] = ()
) -> None:
    """Run an owner on ``factory`` (importable with ``path`` ahead of this interpreter's own), send it
    ``signum`` once its sandbox runs a cell, and assert that the owner dies of that signal (handed on
    once the sandbox was ended) and that the sandbox ends. ``env`` adds to this process's variables."""
    variables = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join([*path, *sys.path])}
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, factory, workdir],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=variables,
        # SIGINT must reach the interpreter's own handler: a background job inherits it ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline().strip()
        assert line.isdigit(), owner.communicate(timeout=SANDBOX_END_TIMEOUT)
        sandbox_pid = int(line)
        assert pid_alive(sandbox_pid)
        owner.send_signal(signum)
        _, stderr = owner.communicate(timeout=OWNER_TIMEOUT)
        assert owner.returncode == -signum, stderr  # the signal, handed on once the sandbox was ended
        deadline = time.monotonic() + SANDBOX_END_TIMEOUT
        while pid_alive(sandbox_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(sandbox_pid), "the sandbox outlived its signalled owner"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.communicate()
