"""A contract test suite for a sandbox plugin's lifecycle: subclass it in the plugin's tests.

Whatever path a run takes (closed, failed to start, a stuck cell, an error, Ctrl-C, the interpreter
exiting with sandboxes still held), the service is left holding nothing; every sandbox carries its
owner's tags; ``rlm cleanup`` ends what dead owners left and spares live ones. Usage::

    from rlm_core.testing.sandbox_lifecycle_contract import SandboxLifecycleContract

    class TestMySandboxLifecycle(SandboxLifecycleContract):
        environment_name = "mysandbox"

        def environment_kwargs(self): ...       # settings for a fresh environment
        def held_sandboxes(self): ...           # ids of the sandboxes the service still holds
        def sandbox_id(self, environment): ...  # the id of a started environment's sandbox
        def live_sandboxes(self): ...           # the plugin's LiveSandboxes registry
        def recorded_owner(self, sandbox_id): ...  # the Owner the service recorded for it
        def leave_sandbox(self, owner): ...     # a sandbox left behind by `owner` (None: cannot)
        def cleanup(self, *, include_live, dry_run): ...  # the plugin's rlm_cleanup_sandboxes

``held_sandboxes`` and ``cleanup`` may see only this test's sandboxes (a label of the test's own, a
private directory): the suite calls ``cleanup(include_live=True)``, which ends every sandbox it sees.
Like :class:`~rlm_core.testing.environment_contract.EnvironmentContract`, the tests are plain
synchronous pytest methods that each run their own event loop.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from rlm_core.environments.lifecycle.owners import Owner, new_run_id
from rlm_core.errors import SandboxError

if TYPE_CHECKING:
    from rlm_core.environments.lifecycle.live import LiveSandboxes
    from rlm_core.environments.sandbox import SandboxEnvironment

MISSING_PYTHON = "python-does-not-exist"
INTERRUPT_PROMPT = "press ctrl-c now"
GATE_TIMEOUT = 60.0

# A cell that says whether any process whose command line is `sleep <marker>` is still running,
# waiting (up to 10 s) for the kernel to finish ending them: seen from inside the sandbox.
_STILL_RUNNING = """
import os, time

def running(marker):
    found = []
    for pid in os.listdir('/proc'):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                if handle.read().split(b'\\0')[:2] == [b'sleep', marker.encode()]:
                    found.append(pid)
        except OSError:
            pass
    return found

deadline = time.monotonic() + 10
while running({marker!r}) and time.monotonic() < deadline:
    time.sleep(0.05)
print(running({marker!r}))
"""


class Gate:
    """A point a (fake or wrapped) service call stops at: the test waits until it is reached, then
    opens it. Thread-safe, so a call made in a worker thread can stop at it too."""

    def __init__(self) -> None:
        self._reached = threading.Event()
        self._opened = threading.Event()

    def stop_here_blocking(self) -> None:
        self._reached.set()
        self._opened.wait(GATE_TIMEOUT)

    async def stop_here(self) -> None:
        self._reached.set()
        await asyncio.to_thread(self._opened.wait, GATE_TIMEOUT)

    async def reached(self) -> bool:
        return await asyncio.to_thread(self._reached.wait, GATE_TIMEOUT)

    def open(self) -> None:
        self._opened.set()


@contextlib.contextmanager
def interpreter_ctrl_c() -> Iterator[None]:
    """Ctrl-C handled the interpreter's own way for the block. A test run started as a background
    job inherits SIGINT ignored (shells ignore it for background commands), and then neither the
    interpreter nor asyncio.run reacts to a SIGINT at all."""
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


class InterruptingHost:
    """A ``host`` callable that answers every sub-call, and presses Ctrl-C (SIGINT to this process)
    when a cell asks ``llm_query(INTERRUPT_PROMPT)``: the cell is then surely running."""

    async def __call__(self, function: str, args: dict[str, Any]) -> Any:
        if args.get("prompt") == INTERRUPT_PROMPT:
            signal.raise_signal(signal.SIGINT)
        return "ok"


class SandboxLifecycleContract(abc.ABC):
    """The lifecycle every sandbox plugin shares. Implement the abstract hooks; override
    :meth:`hold_creation` and :meth:`break_start_after_creation` where the service allows it.

    ``environment_name`` is the name ``RLM(environment=...)`` knows the plugin by;
    ``timeout_seconds`` the limit of the stuck cell (raise it for a slow sandbox).
    """

    environment_name: ClassVar[str]
    timeout_seconds: ClassVar[float] = 1.0

    # -- hooks ---------------------------------------------------------------------------------

    @abc.abstractmethod
    def environment_kwargs(self) -> dict[str, Any]:
        """``environment_kwargs`` for a fresh environment of this test."""

    def make_environment(self, **overrides: Any) -> SandboxEnvironment:
        """A fresh, unstarted environment: the registered factory with :meth:`environment_kwargs`
        and ``overrides`` (the suite passes ``python``, ``kill_grace`` and ``start_timeout``)."""
        from rlm_core.environments.sandbox import SandboxEnvironment
        from rlm_core.plugins import get_registry

        settings = {**self.environment_kwargs(), **overrides}
        environment = get_registry().create("environments", self.environment_name, **settings)
        assert isinstance(environment, SandboxEnvironment)
        return environment

    @abc.abstractmethod
    def held_sandboxes(self) -> Iterable[str]:
        """The ids of the sandboxes the service (or engine) still holds: running, or not yet removed."""

    @abc.abstractmethod
    def sandbox_id(self, environment: SandboxEnvironment) -> str:
        """The id of a started environment's sandbox, as :meth:`held_sandboxes` names it."""

    @abc.abstractmethod
    def live_sandboxes(self) -> LiveSandboxes[Any]:
        """The registry the plugin's transport adds its sandboxes to (ended at interpreter exit)."""

    @abc.abstractmethod
    def recorded_owner(self, sandbox_id: str) -> Owner | None:
        """The owner the service recorded for a sandbox, read back with the plugin's own tag reader."""

    @abc.abstractmethod
    def leave_sandbox(self, owner: Owner) -> str | None:
        """Leave a sandbox behind as if ``owner`` had started it and then been killed (write its tags
        as the transport does); its id. None when the service cannot record that owner (another
        host, say): the checks that need it are skipped."""

    @abc.abstractmethod
    def cleanup(self, *, include_live: bool, dry_run: bool) -> list[dict[str, Any]]:
        """What the plugin's ``rlm_cleanup_sandboxes`` answers."""

    def hold_creation(self, environment: SandboxEnvironment, gate: Gate) -> bool:
        """Make ``environment``'s coming start stop at ``gate`` once the service has created the
        sandbox and before the transport hears of it; False when that cannot be done (the
        cancelled-while-creating test is skipped)."""
        return False

    def break_start_after_creation(self) -> str | None:
        """Make the next start fail after the sandbox exists (a service call failing) and return a
        pattern the error message matches; None skips that test."""
        return None

    # -- helpers -------------------------------------------------------------------------------

    def new_sandboxes(self, before: set[str]) -> list[str]:
        """What the service holds now that it did not hold in ``before``."""
        return sorted(set(self.held_sandboxes()) - before)

    @staticmethod
    def dead_owner() -> Owner:
        """An owner on this machine whose process has ended."""
        process = subprocess.Popen([sys.executable, "-c", "pass"])
        process.wait()
        return Owner(socket.gethostname(), process.pid, "gone-" + new_run_id()[:6])

    @staticmethod
    async def host(function: str, args: dict[str, Any]) -> Any:
        return "ok"

    def run(self, scenario: Callable[[], Coroutine[Any, Any, None]]) -> set[str]:
        """Run ``scenario`` on a fresh event loop; the held sandboxes from before it ran."""
        before = set(self.held_sandboxes())
        asyncio.run(scenario())
        return before

    def assert_nothing_left(self, before: set[str], registry_before: set[str]) -> None:
        assert self.new_sandboxes(before) == [], "the service still holds sandboxes of this test"
        left = set(self.live_sandboxes().keys()) - registry_before
        assert not left, f"sandboxes still in the exit registry: {sorted(left)}"

    # -- every path ends the sandbox -----------------------------------------------------------

    def test_a_closed_environment_leaves_nothing(self) -> None:
        registry_before = set(self.live_sandboxes().keys())

        async def scenario() -> None:
            environment = self.make_environment()
            await environment.start(self.host, {})
            sandbox = self.sandbox_id(environment)
            assert sandbox in set(self.held_sandboxes())
            assert sandbox in self.live_sandboxes()  # ended at exit if never closed
            assert (await environment.execute("print(6 * 7)")).stdout == "42\n"
            await environment.close()
            await environment.close()  # twice: a no-op

        self.assert_nothing_left(self.run(scenario), registry_before)

    def test_a_failed_start_leaves_nothing_and_the_error_shows_stderr(self) -> None:
        import pytest

        registry_before = set(self.live_sandboxes().keys())
        environment = self.make_environment(python=MISSING_PYTHON, start_timeout=30)

        async def scenario() -> None:
            with pytest.raises(SandboxError) as caught:
                await environment.start(self.host, {})
            # The shell (or the sandbox tool) said on stderr that it cannot find the interpreter.
            assert re.search(rf"stderr: [^\n]*{MISSING_PYTHON}", str(caught.value)), str(caught.value)

        self.assert_nothing_left(self.run(scenario), registry_before)

    def test_a_start_that_fails_after_creation_leaves_nothing(self) -> None:
        import pytest

        registry_before = set(self.live_sandboxes().keys())
        before = set(self.held_sandboxes())
        pattern = self.break_start_after_creation()
        if pattern is None:
            pytest.skip("break_start_after_creation() is not implemented for this service")
        environment = self.make_environment()
        with pytest.raises(SandboxError, match=pattern):
            asyncio.run(environment.start(self.host, {}))
        self.assert_nothing_left(before, registry_before)

    def test_a_stuck_cell_is_killed_with_what_it_started(self) -> None:
        registry_before = set(self.live_sandboxes().keys())
        before = set(self.held_sandboxes())
        marker = f"4321.{os.getpid()}"  # a sleep length nothing else uses: found by its command line

        async def scenario() -> None:
            environment = self.make_environment(kill_grace=1)
            async with environment:
                await environment.start(self.host, {})
                sandbox = self.sandbox_id(environment)
                started = await environment.execute(
                    f"import subprocess\nsubprocess.Popen(['sleep', '{marker}'])"
                )
                assert started.error is None, started.error
                stuck = await environment.execute(
                    "import time\ntime.sleep(120)", timeout=self.timeout_seconds
                )
                assert stuck.timed_out and stuck.state_lost
                probe = await environment.execute(_STILL_RUNNING.format(marker=marker))
                assert probe.stdout == "[]\n", f"a process a cell started outlived its runtime: {probe}"
                assert self.new_sandboxes(before) == [sandbox]  # restarted in the same sandbox

        asyncio.run(scenario())
        self.assert_nothing_left(before, registry_before)

    def test_an_error_in_the_code_using_it_ends_the_sandbox(self) -> None:
        import pytest

        registry_before = set(self.live_sandboxes().keys())

        async def scenario() -> None:
            with pytest.raises(RuntimeError, match="the caller failed"):
                async with self.make_environment() as environment:
                    await environment.start(self.host, {})
                    assert (await environment.execute("1 / 0")).error is not None  # reported, not raised
                    raise RuntimeError("the caller failed")

        self.assert_nothing_left(self.run(scenario), registry_before)

    def test_ctrl_c_during_a_cell_ends_the_sandbox(self) -> None:
        import pytest

        registry_before = set(self.live_sandboxes().keys())
        before = set(self.held_sandboxes())

        async def scenario() -> None:
            async with self.make_environment() as environment:  # what the engine's run does
                await environment.start(InterruptingHost(), {})
                await environment.execute(f"llm_query({INTERRUPT_PROMPT!r})\nimport time\ntime.sleep(60)")

        with interpreter_ctrl_c(), pytest.raises(KeyboardInterrupt):
            asyncio.run(scenario())
        self.assert_nothing_left(before, registry_before)

    def test_cancelled_while_creating_ends_the_late_sandbox(self) -> None:
        import pytest

        registry_before = set(self.live_sandboxes().keys())
        environment = self.make_environment()
        gate = Gate()
        if not self.hold_creation(environment, gate):
            pytest.skip("hold_creation() cannot hold this service's creation")

        async def scenario() -> None:
            starting = asyncio.create_task(environment.start(self.host, {}))
            try:
                assert await gate.reached(), "the start never reached the service's creation"
                starting.cancel()
                # While the creation is held the start cannot have ended the sandbox, so it must
                # still be waiting; one that gave up at once would leave the sandbox behind. (Only
                # a start that is wrong can finish within this window.)
                await asyncio.wait({starting}, timeout=0.3)
                assert not starting.done(), "a cancelled start must wait for the sandbox being created"
            finally:
                gate.open()  # the service finishes creating it: the cancelled start must end it
            with pytest.raises(asyncio.CancelledError):
                await starting

        self.assert_nothing_left(self.run(scenario), registry_before)

    def test_sandboxes_still_held_at_exit_are_ended(self) -> None:
        async def scenario() -> None:
            environment = self.make_environment()
            await environment.start(self.host, {})
            sandbox = self.sandbox_id(environment)
            assert sandbox in self.live_sandboxes()
            self.live_sandboxes().end_all()  # what the interpreter runs at exit
            assert sandbox not in set(self.held_sandboxes())
            assert sandbox not in self.live_sandboxes()
            await environment.close()  # closing what is already ended does not raise

        before = self.run(scenario)
        assert self.new_sandboxes(before) == []

    def test_persistent_turns_under_the_engine_keep_one_sandbox(self) -> None:
        from rlm_core import RLM
        from rlm_core.testing.scripted import ScriptedClient, repl

        root = ScriptedClient(
            [repl("seen = [context]\nFINAL(llm_query('a colour?'))"), repl("FINAL(seen[0] + '+' + context)")]
        )
        rlm = RLM(
            backend=root,
            other_backends=[ScriptedClient(["teal"], model_name="sub")],
            environment=self.environment_name,
            environment_kwargs=self.environment_kwargs(),
            persistent=True,
        )

        async def turns() -> None:
            async with rlm:  # one event loop for every turn: the stream lives on the loop that opened it
                assert (await rlm.acompletion("first")).response == "teal"
                assert (await rlm.acompletion("second")).response == "first+second"
                assert len(self.new_sandboxes(before)) == 1  # one sandbox for every turn

        before = set(self.held_sandboxes())
        asyncio.run(turns())
        assert self.new_sandboxes(before) == []  # closing the RLM ended it

    # -- owners and rlm cleanup ----------------------------------------------------------------

    def test_every_sandbox_carries_the_owner_tags(self) -> None:
        async def scenario() -> None:
            async with self.make_environment() as environment:
                await environment.start(self.host, {})
                owner = self.recorded_owner(self.sandbox_id(environment))
                assert owner is not None, "the sandbox carries no owner tags"
                assert (owner.host, owner.pid) == (socket.gethostname(), os.getpid())
                run_id = getattr(environment.transport, "run_id", None)
                assert run_id is None or owner.run_id == run_id
                assert not owner.is_gone()

        self.run(scenario)

    def leave_orphan(self) -> tuple[str, Owner]:
        import pytest

        dead = self.dead_owner()
        orphan = self.leave_sandbox(dead)
        if orphan is None:
            pytest.skip("leave_sandbox() cannot record an owner for this service")
        recorded = self.recorded_owner(orphan)
        assert recorded is not None and recorded.pid == dead.pid and recorded.is_gone()
        return orphan, recorded

    def test_cleanup_ends_orphans_and_spares_live_owners(self) -> None:
        orphan, recorded = self.leave_orphan()
        elsewhere = self.leave_sandbox(Owner("another-host.invalid", 1, "far-" + new_run_id()[:6]))

        async def scenario() -> None:
            async with self.make_environment() as environment:
                await environment.start(self.host, {})
                live = self.sandbox_id(environment)
                rows = {row["id"]: row for row in self.cleanup(include_live=False, dry_run=False)}
                assert orphan in rows and live not in rows and elsewhere not in rows
                row = rows[orphan]
                assert (row["run_id"], row["owner_pid"], row["owner_host"]) == (
                    recorded.run_id,
                    recorded.pid,
                    recorded.host,
                )
                assert row["removed"] is True and isinstance(row["kind"], str) and "error" not in row
                held = set(self.held_sandboxes())
                assert orphan not in held and live in held
                if elsewhere is not None:  # an owner on another host cannot be checked: spared
                    assert elsewhere in held
                    swept = self.cleanup(include_live=True, dry_run=False)
                    assert {elsewhere, live} <= {row["id"] for row in swept if row["removed"]}

        before = self.run(scenario)
        assert self.new_sandboxes(before) == []

    def test_a_dry_run_ends_nothing(self) -> None:
        orphan, _ = self.leave_orphan()

        async def scenario() -> None:
            async with self.make_environment() as environment:
                await environment.start(self.host, {})
                live = self.sandbox_id(environment)
                everything = self.cleanup(include_live=True, dry_run=True)
                assert {orphan, live} <= {row["id"] for row in everything}
                assert not any(row["removed"] for row in everything)
                orphans = self.cleanup(include_live=False, dry_run=True)
                assert [row["id"] for row in orphans if row["id"] in (orphan, live)] == [orphan]
                assert {orphan, live} <= set(self.held_sandboxes())
                assert [row["id"] for row in self.cleanup(include_live=False, dry_run=False)] == [orphan]

        before = self.run(scenario)
        assert self.new_sandboxes(before) == []

    def test_include_live_ends_live_owners_sandboxes_too(self) -> None:
        async def scenario() -> None:
            environment = self.make_environment()
            await environment.start(self.host, {})
            live = self.sandbox_id(environment)
            rows = self.cleanup(include_live=True, dry_run=False)
            assert [(row["id"], row["removed"]) for row in rows if row["id"] == live] == [(live, True)]
            assert live not in set(self.held_sandboxes())
            await environment.close()  # the run's own close finds it gone and does not raise

        before = self.run(scenario)
        assert self.new_sandboxes(before) == []
