"""The local environment under faults: a cell stuck outside Python, memory of a finished run."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

from rlm_core import RLM
from rlm_core.environments import local
from rlm_core.environments.local import LocalEnvironment
from rlm_core.testing import ScriptedClient


async def _no_host(function: str, args: dict[str, Any]) -> Any:
    raise RuntimeError(function)


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    errors: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", errors.append)
    yield errors


def test_the_stuck_cell_guard_holds_until_the_blocked_thread_ends(
    monkeypatch: pytest.MonkeyPatch, thread_errors: list[Any]
) -> None:
    monkeypatch.setattr(local, "_UNWIND_GRACE", 0.2)

    async def main() -> None:
        env = LocalEnvironment(timeout=0.2)
        await env.start(_no_host, {})
        # time.sleep blocks in C: the timeout exception cannot land until it returns.
        first = await env.execute("import time\ntime.sleep(1.5)\nprint('woke')")
        assert first.timed_out and "blocked outside Python" in (first.error or "")
        second = await env.execute("print('should not run yet')")
        assert "still blocked" in (second.error or "") and second.stdout == ""
        deadline = time.monotonic() + 5
        while env._stuck is not None and env._stuck.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        third = await env.execute("print('runs now')")
        assert third.error is None and third.stdout.strip() == "runs now"
        await env.close()

    asyncio.run(main())
    assert thread_errors == []  # the worker thread ended without an unhandled error
    assert not [t for t in threading.enumerate() if t.name == "rlm-local-cell"]


def test_a_finished_runs_memory_is_freed_without_waiting_for_the_cyclic_collector() -> None:
    probe = types.ModuleType("rlm_memory_probe")
    probe.refs = []  # type: ignore[attr-defined]
    sys.modules["rlm_memory_probe"] = probe
    cell = (
        "import sys, weakref\n"
        "class Blob:\n"
        "    def __init__(self): self.data = bytearray(50_000_000)\n"
        "big = Blob()\n"
        "def keep(): return big  # a function in the namespace: a reference cycle via __globals__\n"
        "sys.modules['rlm_memory_probe'].refs.append(weakref.ref(big))\n"
        "FINAL('ok')"
    )
    gc.disable()
    try:
        result = RLM(backend=ScriptedClient([f"```repl\n{cell}\n```"])).completion("ctx")
        assert result.response == "ok"
        (ref,) = probe.refs  # type: ignore[attr-defined]
        assert ref() is None, "the run's variables outlived close() (held by a reference cycle)"
    finally:
        gc.enable()
        del sys.modules["rlm_memory_probe"]


def test_a_persistent_rlm_frees_its_namespace_on_close() -> None:
    probe = types.ModuleType("rlm_memory_probe2")
    probe.refs = []  # type: ignore[attr-defined]
    sys.modules["rlm_memory_probe2"] = probe
    cell = (
        "import sys, weakref\n"
        "class Blob: pass\n"
        "big = Blob()\n"
        "sys.modules['rlm_memory_probe2'].refs.append(weakref.ref(big))\n"
        "FINAL('ok')"
    )
    gc.disable()
    try:
        rlm = RLM(backend=ScriptedClient([f"```repl\n{cell}\n```"]), persistent=True)
        assert rlm.completion("ctx").response == "ok"
        (ref,) = probe.refs  # type: ignore[attr-defined]
        assert ref() is not None  # still in use between turns
        rlm.close()
        assert ref() is None
    finally:
        gc.enable()
        del sys.modules["rlm_memory_probe2"]
