"""Sandbox ownership, as every sandbox plugin's cleanup decides it."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys

import pytest

from rlm_core.environments.ownership import LiveSandboxes, Owner, is_orphan, parse_pid, pid_alive


def test_a_live_owner_is_not_an_orphan_and_a_finished_one_is() -> None:
    me = Owner.current()
    assert me.pid == os.getpid() and pid_alive(me.pid)
    assert not is_orphan(me.host, me.pid)
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    assert is_orphan(socket.gethostname(), finished.stdout.strip())


def test_owners_on_other_hosts_are_never_orphans_and_bad_pids_read_as_zero() -> None:
    assert not is_orphan("some-other-host", 1)
    assert parse_pid("not a pid") == parse_pid(None) == 0
    assert is_orphan(socket.gethostname(), "")  # no owner pid recorded: nobody to wait for


def test_every_held_sandbox_is_ended_once_even_when_one_fails(caplog: pytest.LogCaptureFixture) -> None:
    ended: list[str] = []

    def end(name: str) -> None:
        if name == "bad":
            raise RuntimeError("service unreachable")
        ended.append(name)

    live: LiveSandboxes[str] = LiveSandboxes("Example", end)
    for key in ("a", "bad", "b", "closed"):
        live.add(key, key)
    live.discard("closed")  # closed by its run: nothing left to end
    with caplog.at_level(logging.WARNING, logger="rlm_core"):
        live.end_all()
    assert ended == ["a", "b"]
    assert "could not end Example sandbox bad at exit: service unreachable" in caplog.text
    live.end_all()  # a second exit hook run finds nothing
    assert ended == ["a", "b"]
