"""The sandbox lifecycle's pieces on their own: owner tags both ways, the cleanup loop, the exit
registry in a real interpreter, cancelled creations, the process byte stream and its stderr tail."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator

import attrs
import pytest

from rlm_core.environments import ByteStream
from rlm_core.environments.lifecycle import (
    Owner,
    OwnerLabels,
    OwnerTags,
    ProcessByteStream,
    RuntimeGroups,
    StderrTail,
    cleanup_rows,
    created_or_ended,
    exit_status,
    label_safe,
    reported_as,
    run_blocking,
    run_cleanup,
)
from rlm_core.errors import ConfigurationError, SandboxError, SandboxStartError


def ended_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# -- owners and their tags ------------------------------------------------------------------------


def test_keyed_tags_round_trip_and_name_the_keys_as_docker_and_modal_store_them() -> None:
    owner = Owner.current("run-1")
    docker = OwnerTags(separator=".")
    assert docker.tags(owner) == {
        "rlm-core": "1",
        "rlm-core.run-id": "run-1",
        "rlm-core.owner-pid": str(os.getpid()),
        "rlm-core.owner-host": socket.gethostname(),
    }
    assert docker.read(docker.tags(owner)) == owner
    assert OwnerTags().read(OwnerTags().tags(owner)) == owner
    assert OwnerTags().key("run-id") == "rlm-core-run-id"
    assert docker.read({"team": "search"}) is None  # no mark: not an rlm-core sandbox
    assert docker.read({"rlm-core": "1"}) == Owner("", 0, "")  # marked, owner unknown


def test_plain_labels_round_trip_with_this_host_read_back_by_its_name() -> None:
    labels = OwnerLabels()
    owner = Owner(socket.gethostname(), 4242, "abc")
    written = labels.labels(owner)
    assert written[0] == "rlm-core" and f"rlm-core-host-{label_safe(socket.gethostname())}" in written
    assert labels.read(written) == owner
    elsewhere = labels.read(["rlm-core", "rlm-core-pid-7", "rlm-core-host-build-box-7"])
    assert elsewhere == Owner("build-box-7", 7, "")  # another machine's name stays as stored
    assert labels.read(["rlm-core-pid-7"]) is None
    assert label_safe("Build_Box.example") == "build-box-example"


def test_an_owner_is_gone_only_when_it_ran_here_and_ended() -> None:
    assert not Owner.current().is_gone()
    assert Owner(socket.gethostname(), ended_pid(), "r").is_gone()
    assert not Owner("another-host.invalid", ended_pid(), "r").is_gone()


# -- the cleanup loop ---------------------------------------------------------------------------------


@attrs.define
class MemoryService:
    """An in-memory sandbox service: ``tags`` maps each sandbox's id to its tags; ending one removes it."""

    tags: dict[str, dict[str, str]]
    broken: set[str] = attrs.field(factory=set)  # ending these fails
    listing_breaks_after: str | None = None
    ended: list[str] = attrs.field(factory=list)
    kind: str = "memory"

    async def listing(self) -> AsyncIterator[str]:
        for sandbox in list(self.tags):
            yield sandbox
            if sandbox == self.listing_breaks_after:
                raise ConnectionError("the listing broke")

    def sandboxes(self) -> AsyncIterator[str]:
        return self.listing()

    def identify(self, sandbox: str) -> str:
        return sandbox

    def owner(self, sandbox: str) -> Owner | None:
        return OwnerTags().read(self.tags[sandbox])

    async def end(self, sandbox: str) -> None:
        if sandbox in self.broken:
            raise ConnectionError("the service refused")
        self.ended.append(sandbox)
        del self.tags[sandbox]


DEAD = Owner(socket.gethostname(), ended_pid(), "d2")


def service() -> MemoryService:
    tags = OwnerTags()
    return MemoryService(
        {
            "dead-1": tags.tags(Owner(socket.gethostname(), ended_pid(), "d1")),
            "dead-2": tags.tags(DEAD),
            "live": tags.tags(Owner.current("l")),
            "far": tags.tags(Owner("another-host.invalid", 1, "f")),
            "not-ours": {"team": "search"},
        }
    )


def test_orphans_are_ended_one_failure_does_not_stop_the_others() -> None:
    memory = service()
    memory.broken.add("dead-1")
    rows = run_cleanup(memory, include_live=False, dry_run=False)
    assert [(row["id"], row["removed"], row.get("error")) for row in rows] == [
        ("dead-1", False, "ConnectionError: the service refused"),
        ("dead-2", True, None),
    ]
    assert rows[1] == {
        "kind": "memory",
        "id": "dead-2",
        "run_id": "d2",
        "owner_pid": DEAD.pid,
        "owner_host": DEAD.host,
        "removed": True,
    }
    assert memory.ended == ["dead-2"] and set(memory.tags) == {"dead-1", "live", "far", "not-ours"}


def test_include_live_ends_every_rlm_core_sandbox_and_a_dry_run_ends_none() -> None:
    memory = service()
    listed = run_cleanup(memory, include_live=True, dry_run=True)
    assert sorted(row["id"] for row in listed) == ["dead-1", "dead-2", "far", "live"]
    assert memory.ended == [] and not any(row["removed"] for row in listed)
    run_cleanup(memory, include_live=True, dry_run=False)
    assert set(memory.tags) == {"not-ours"}


def test_a_listing_that_fails_keeps_the_rows_so_far_and_says_how_to_fix_it() -> None:
    memory = service()
    memory.listing_breaks_after = "dead-1"
    rows = run_cleanup(memory, include_live=False, dry_run=False, fix="check the network")
    assert rows == [
        {**rows[0], "id": "dead-1", "removed": True},
        {
            "kind": "memory",
            "error": "could not list memory sandboxes (ConnectionError: the listing broke); check the network",
        },
    ]


def test_a_plain_listing_and_plain_methods_work_as_well() -> None:
    class Plain:
        kind = "plain"

        def sandboxes(self) -> list[str]:
            return ["a"]

        def identify(self, sandbox: str) -> str:
            return sandbox

        def owner(self, sandbox: str) -> Owner:
            return Owner(socket.gethostname(), ended_pid(), "p")

        def end(self, sandbox: str) -> None:
            raise SandboxError("gone already")

    (row,) = asyncio.run(cleanup_rows(Plain(), include_live=False, dry_run=False))
    assert (row["id"], row["removed"], row["error"]) == ("a", False, "SandboxError: gone already")


def test_run_blocking_works_inside_a_running_event_loop() -> None:
    async def inner() -> int:
        await asyncio.sleep(0)
        return 7

    async def notebook() -> int:
        return run_blocking(inner())  # a hook called from code that runs a loop

    assert asyncio.run(notebook()) == 7


# -- the exit registry, in a real interpreter ---------------------------------------------------


_HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from rlm_core.environments.lifecycle import LiveSandboxes

    live = LiveSandboxes("Example", lambda name: print("ended", name, flush=True))

    async def main():
        live.add("a", "a")
        live.add("b", "b")
        live.discard("b")  # closed by its run
        print("holding", flush=True)
        await asyncio.sleep(3600)  # Ctrl-C comes first

    asyncio.run(main())
    """
)


def test_ctrl_c_in_a_real_interpreter_ends_what_it_still_holds() -> None:
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "holding\n"
        holder.send_signal(signal.SIGINT)
        rest, _ = holder.communicate(timeout=60)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert holder.returncode != 0  # it died of the KeyboardInterrupt, after the exit hook ran
    assert rest == "ended a\n"


# -- starting and cancelling ------------------------------------------------------------------------


def test_a_start_cancelled_while_the_service_creates_ends_the_late_sandbox() -> None:
    ended: list[str] = []

    async def scenario() -> None:
        created = asyncio.Event()
        release = asyncio.Event()

        async def create() -> str:
            created.set()
            await release.wait()
            return "late-sandbox"

        async def end(sandbox: str) -> None:
            ended.append(sandbox)

        starting = asyncio.create_task(created_or_ended(create(), end))
        await created.wait()
        starting.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await starting

    asyncio.run(scenario())
    assert ended == ["late-sandbox"]


def test_a_creation_that_fails_raises_its_own_error() -> None:
    async def create() -> str:
        raise ConfigurationError("no such image")

    async def end(sandbox: str) -> None:
        raise AssertionError("nothing to end")

    with pytest.raises(ConfigurationError, match="no such image"):
        asyncio.run(created_or_ended(create(), end))


def test_a_failing_service_call_says_what_was_being_done() -> None:
    failing = reported_as("installing pip packages failed", SandboxStartError)
    with pytest.raises(SandboxStartError, match=r"^installing pip packages failed: boom$") as caught, failing:
        raise OSError("boom")
    assert isinstance(caught.value.__cause__, OSError)
    # rlm-core's own errors stay as they are: they already say what happened.
    with pytest.raises(ConfigurationError, match="bad chunk"), reported_as("copying a file"):
        raise ConfigurationError("bad chunk")


def test_each_runtime_gets_a_pidfile_of_its_own() -> None:
    groups = RuntimeGroups("/rlm")
    first, second = groups.next(), groups.next()
    assert (first.pidfile, second.pidfile) == ("/rlm/runtime-1.pid", "/rlm/runtime-2.pid")
    assert first.command(["python3", "x.py"])[-3:] == ["rlm-runtime", "python3", "x.py"]
    assert "/rlm/runtime-1.pid" in first.kill_script()


# -- the process byte stream ------------------------------------------------------------------------


class ChunkStream(ProcessByteStream):
    """A ProcessByteStream over a real child process: its stdout and stderr, in chunks."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None and process.stderr is not None
        super().__init__(self._chunks(process.stdout), stderr=process.stderr, describe="a test process")
        self.process = process

    @staticmethod
    async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[str | bytes]:
        while chunk := await reader.read(3):
            yield chunk.decode()  # str chunks, as some SDKs give them

    async def send(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        await self.process.stdin.drain()

    async def end_process(self) -> None:
        # The script exits by itself once it has answered: wait for that exit (what the assertion
        # reads), rather than kill it in the moment between its stdout closing and its exit.
        self.exit_code = await self.process.wait()


def test_the_stream_reads_in_pieces_writes_and_says_why_the_process_ended() -> None:
    script = (
        "import sys\n"
        "sys.stderr.write('w' * 10000 + 'the last words')\n"
        "sys.stdout.write(sys.stdin.readline().upper())\n"
        "sys.exit(3)"
    )

    async def scenario() -> tuple[bytes, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            script,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stream = ChunkStream(process)
        assert isinstance(stream, ByteStream)
        await stream.write(b"hello there\n")
        received = b""
        while chunk := await stream.read(4):
            assert 1 <= len(chunk) <= 4
            received += chunk
        assert await stream.read(4) == b""  # EOF stays EOF
        await stream.close()
        await stream.close()  # twice: a no-op
        with pytest.raises(ConnectionError, match="the runtime in a test process is gone"):
            await stream.write(b"more\n")
        return received, stream.diagnostics()

    received, diagnostics = asyncio.run(scenario())
    assert received == b"HELLO THERE\n"
    assert diagnostics.startswith("exit code 3; stderr: ") and diagnostics.endswith("the last words")
    assert len(diagnostics) < 700  # a tail, not the whole of stderr


def test_the_stderr_tail_keeps_the_end_and_exit_codes_read_as_words() -> None:
    tail = StderrTail(limit=10)
    tail.add(b"0123456789")
    tail.add("abc")
    assert tail.text == "3456789abc" and tail.summary(chars=3) == "stderr: abc"
    assert StderrTail().summary() == ""
    assert exit_status(None) == "" and exit_status(0) == "exit code 0"
    assert exit_status(137) == "exit code 137 (killed: often the memory limit)"
    assert exit_status(-signal.SIGKILL) == "killed by SIGKILL"
    assert exit_status(-200) == "killed by signal 200"
