"""``rlm cleanup`` for bwrap: what a killed host process leaves is found and removed, live runs are spared."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import rlm_bwrap
from rlm_bwrap.cleanup import WORKDIR_PREFIX

pytestmark = pytest.mark.usefixtures("require_bwrap")

PLUGIN_ROOT = Path(rlm_bwrap.__file__).resolve().parents[1]

# A host process that opens a bwrap sandbox, starts a long child in it, says so, and waits to be killed.
OWNER = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, sys.argv[1])
    from rlm_bwrap import make_environment
    from rlm_core.testing.environment_contract import RecordingHost

    async def main():
        env = make_environment(timeout=60)
        await env.start(RecordingHost(), {})
        result = await env.execute(f"import subprocess; subprocess.Popen(['sleep', {sys.argv[2]!r}])")
        assert result.error is None, result.error
        print(env.transport.workdir, flush=True)
        await asyncio.sleep(120)

    asyncio.run(main())
    """
)


def sleepers(marker: str) -> list[int]:
    return [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _cmdline(p).endswith(f"sleep\0{marker}\0")
    ]


def _cmdline(process: Path) -> str:
    try:
        return (process / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


# The sandboxed child's sleep length, unique to this test process: nothing else on the machine uses it.
SLEEP_MARKER = f"4343.{os.getpid()}"


@contextlib.contextmanager
def sandbox_owner() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A real host process with a live bwrap sandbox (and a child in it); SIGKILLed on the way out."""
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(PLUGIN_ROOT), SLEEP_MARKER], stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None
        workdir = owner.stdout.readline().strip()
        assert settled(expect_running=True), "the sandboxed child should be running while its owner lives"
        yield owner, workdir
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()


def settled(expect_running: bool) -> bool:
    """Whether the sandboxed sleeper is (or is no longer) running, waiting up to 10 s for it to get there:
    the host sees processes in another pid namespace appear and go with a small delay."""
    deadline = time.monotonic() + 10
    while bool(sleepers(SLEEP_MARKER)) != expect_running and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(sleepers(SLEEP_MARKER)) == expect_running


def test_a_killed_owner_leaves_only_a_workdir_which_cleanup_removes(private_tempdir: Path) -> None:
    with sandbox_owner() as (owner, workdir):
        assert workdir.startswith(str(private_tempdir / WORKDIR_PREFIX)), workdir
        # While the owner lives, a plain cleanup leaves its sandbox alone.
        assert rlm_bwrap.rlm_cleanup_sandboxes(include_live=False, dry_run=False) == []
    assert settled(expect_running=False), "--die-with-parent should end the sandbox with its owner"
    assert Path(workdir).is_dir()  # the files stay behind: that is what cleanup is for

    listed = rlm_bwrap.rlm_cleanup_sandboxes(include_live=False, dry_run=True)
    assert listed == [
        {
            "kind": "bwrap",
            "id": workdir,
            "run_id": "",  # a bwrap workdir names its owner's pid only
            "owner_pid": owner.pid,
            "owner_host": os.uname().nodename,
            "removed": False,
        }
    ]
    assert Path(workdir).is_dir()
    removed = rlm_bwrap.rlm_cleanup_sandboxes(include_live=False, dry_run=False)
    assert [(e["id"], e["removed"]) for e in removed] == [(workdir, True)]
    assert not Path(workdir).exists()


def test_include_live_stops_a_live_sandbox_too(private_tempdir: Path) -> None:
    with sandbox_owner() as (owner, workdir):
        removed = rlm_bwrap.rlm_cleanup_sandboxes(include_live=True, dry_run=False)
        assert [(e["id"], e["owner_pid"], e["removed"]) for e in removed] == [(workdir, owner.pid, True)]
        assert settled(expect_running=False), "cleanup with include_live should stop the live sandbox"


def test_unrelated_directories_are_never_touched(private_tempdir: Path) -> None:
    (private_tempdir / "rlm-bwrap-notapid").mkdir()
    (private_tempdir / "rlm-bwrap-999999999-x").write_text("a file, not a workdir")
    assert rlm_bwrap.rlm_cleanup_sandboxes(include_live=True, dry_run=False) == []
    assert (private_tempdir / "rlm-bwrap-notapid").is_dir()
