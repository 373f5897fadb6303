"""The sandbox runtime protocol: the runtime script over real pipes, and SandboxEnvironment over a minimal
third-party transport (what a plugin author writes)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rlm_core.environments import runtime as repl_runtime
from rlm_core.environments.sandbox import SandboxEnvironment
from rlm_core.environments.subprocess_env import ProcessStream, SubprocessEnvironment
from rlm_core.environments.transport import ByteStream, Transport
from rlm_core.errors import ConfigurationError, SandboxError

RUNTIME = Path(repl_runtime.__file__)


class RuntimeProcess:
    """The runtime script as a child process, spoken to with raw frames (no host library involved)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(RUNTIME)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(repl_runtime.encode_frame(message))
        self.proc.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        header = self.proc.stdout.read(4)
        assert len(header) == 4, "the runtime closed its output"
        body = self.proc.stdout.read(int.from_bytes(header, "big"))
        return json.loads(body)

    def close(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=30)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return code


@pytest.fixture
def runtime() -> Any:
    process = RuntimeProcess()
    yield process
    if process.proc.poll() is None:
        process.proc.kill()
        process.proc.wait()
    for pipe in (process.proc.stdin, process.proc.stdout, process.proc.stderr):
        if pipe is not None and not pipe.closed:
            pipe.close()


def test_frame_is_length_prefixed_utf8_json() -> None:
    frame = repl_runtime.encode_frame({"type": "log", "message": "héllo", "items": {1, 2}})
    size = int.from_bytes(frame[:4], "big")
    assert size == len(frame) - 4
    decoded = json.loads(frame[4:].decode("utf-8"))
    assert decoded["message"] == "héllo"
    assert sorted(decoded["items"]) == [1, 2]  # sets travel as lists


def test_runtime_handshake_exec_and_shutdown(runtime: RuntimeProcess) -> None:
    ready = runtime.receive()
    assert ready["type"] == "ready" and ready["protocol"] == repl_runtime.PROTOCOL_VERSION
    runtime.send({"type": "init", "id": "i", "host_tools": ["lookup"], "variables": {"limit": 3}})
    assert runtime.receive() == {"type": "result", "id": "i", "error": None}
    runtime.send({"type": "exec", "id": "e1", "code": "print(limit * 2)\nlimit", "timeout": 10})
    result = runtime.receive()
    assert result["type"] == "result" and result["id"] == "e1"
    assert result["stdout"] == "6\n3\n" and result["error"] is None
    runtime.send({"type": "shutdown"})
    assert runtime.close() == 0


def test_calls_are_answered_out_of_order(runtime: RuntimeProcess) -> None:
    runtime.receive()  # ready
    code = (
        "import threading\n"
        "out = {}\n"
        "def ask(p):\n"
        "    out[p] = llm_query(p)\n"
        "threads = [threading.Thread(target=ask, args=(p,)) for p in ('a', 'b', 'c')]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(sorted(out.items()))\n"
        "lookup(1, key='k')"
    )
    runtime.send({"type": "init", "id": "i", "host_tools": ["lookup"]})
    runtime.receive()
    runtime.send({"type": "exec", "id": "e", "code": code, "timeout": 30})
    calls = [runtime.receive() for _ in range(3)]
    assert {c["type"] for c in calls} == {"call"} and len({c["id"] for c in calls}) == 3
    for call in reversed(calls):  # three calls in flight at once, answered in reverse order
        runtime.send({"type": "reply", "id": call["id"], "result": "re:" + call["args"]["prompt"]})
    tool_call = runtime.receive()
    assert tool_call["function"] == "lookup" and tool_call["args"] == {"args": [1], "kwargs": {"key": "k"}}
    runtime.send({"type": "reply", "id": tool_call["id"], "error": "KeyError: 'k' is not there"})
    result = runtime.receive()
    assert result["stdout"] == "[('a', 're:a'), ('b', 're:b'), ('c', 're:c')]\n"
    assert "HostCallError: KeyError: 'k' is not there" in result["error"]


def test_stray_writes_to_fd1_and_stdin_reads_cannot_touch_the_channel(runtime: RuntimeProcess) -> None:
    runtime.receive()
    code = (
        "import os, sys, subprocess\n"
        "os.write(1, b'raw bytes on fd 1')\n"
        "subprocess.run(['echo', 'child output'])\n"
        "print(repr(sys.stdin.read()), repr(os.read(0, 10)))"
    )
    runtime.send({"type": "exec", "id": "e", "code": code, "timeout": 30})
    result = runtime.receive()
    assert result["type"] == "result" and result["error"] is None
    assert result["stdout"] == "'' b''\n"
    runtime.send({"type": "exec", "id": "e2", "code": "'next'", "timeout": 30})
    assert runtime.receive()["stdout"] == "next\n"
    runtime.close()
    assert runtime.proc.stderr is not None


def test_context_from_a_file(runtime: RuntimeProcess, tmp_path: Path) -> None:
    runtime.receive()
    (tmp_path / "c.txt").write_text("line one\r\nline two", encoding="utf-8")
    (tmp_path / "c.json").write_text(json.dumps({"k": [1, 2]}), encoding="utf-8")
    runtime.send(
        {"type": "context", "id": "c0", "index": 0, "path": str(tmp_path / "c.txt"), "format": "text"}
    )
    assert runtime.receive()["error"] is None
    runtime.send(
        {"type": "context", "id": "c1", "index": 1, "path": str(tmp_path / "c.json"), "format": "json"}
    )
    assert runtime.receive()["error"] is None
    runtime.send(
        {"type": "context", "id": "c2", "index": 2, "path": str(tmp_path / "missing"), "format": "text"}
    )
    missing = runtime.receive()
    assert "FileNotFoundError" in missing["error"]
    runtime.send({"type": "exec", "id": "e", "code": "print(repr(context_0), context['k'])", "timeout": 30})
    assert runtime.receive()["stdout"] == "'line one\\r\\nline two' [1, 2]\n"


def test_eof_ends_the_runtime_even_with_a_stuck_cell(runtime: RuntimeProcess) -> None:
    runtime.receive()
    runtime.send({"type": "exec", "id": "e", "code": "import time\ntime.sleep(600)", "timeout": None})
    assert runtime.close() == 0


# -- the host side over a transport written the way a plugin author would -----------------------


class MinimalTransport:
    """About the least a sandbox plugin must write: a directory, files, and a process with pipes."""

    def __init__(self, root: Path) -> None:
        self.workdir = str(root)
        self.python = sys.executable
        self.started = 0
        self.closed = 0
        self.streams: list[ProcessStream] = []

    async def start(self) -> None:
        self.started += 1
        os.makedirs(self.workdir, exist_ok=True)

    async def put_file(self, path: str, data: bytes) -> None:
        Path(path).write_bytes(data)

    async def open_stream(self, argv: list[str]) -> ByteStream:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.workdir,
            start_new_session=True,
        )
        stream = ProcessStream(process, None)
        self.streams.append(stream)
        return stream

    async def close(self) -> None:
        self.closed += 1
        for stream in self.streams:
            await stream.close()

    def describe(self) -> str:
        return "minimal test sandbox"


async def _host(function: str, args: dict[str, Any]) -> Any:
    if function == "llm_query":
        if args["prompt"] == "hang":
            await asyncio.sleep(3600)
        if args["prompt"] == "object":
            return object()
        return "ok:" + args["prompt"]
    raise RuntimeError(function)


async def test_a_minimal_transport_satisfies_the_contract(tmp_path: Path) -> None:
    transport = MinimalTransport(tmp_path / "box")
    assert isinstance(transport, Transport)
    env = SandboxEnvironment(transport, timeout=30, inline_context_chars=10)
    await env.start(_host, {})
    try:
        await env.load_context(0, "a context longer than ten characters")
        await env.load_context(1, "short")
        assert (tmp_path / "box" / "context_0.txt").read_text() == "a context longer than ten characters"
        result = await env.execute("print(len(context_0), context, llm_query('x'))")
        assert result.stdout == "36 short ok:x\n"
    finally:
        await env.close()
        await env.close()
    assert transport.closed == 1
    assert all(s.process.returncode is not None for s in transport.streams)


async def test_timeout_cancels_the_sub_call_in_flight(tmp_path: Path) -> None:
    cancelled = asyncio.Event()

    async def host(function: str, args: dict[str, Any]) -> Any:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    env = SubprocessEnvironment(timeout=30, kill_grace=1)
    await env.start(host, {})
    try:
        result = await env.execute("llm_query('hang')", timeout=1)
        assert result.timed_out and "TimeoutError" in (result.error or "")
        assert not result.state_lost  # the runtime interrupted the waiting cell: no restart needed
        await asyncio.wait_for(cancelled.wait(), timeout=30)  # cancelled with the cell, not at close
        assert (await env.execute("'fine'")).stdout == "fine\n"
    finally:
        await env.close()


async def test_non_json_results_and_values_get_clear_errors(tmp_path: Path) -> None:
    env = SubprocessEnvironment(timeout=30)
    with pytest.raises(ConfigurationError, match="cannot be sent into the sandbox"):
        await env.start(_host, {"lock": asyncio.Lock()})
    env = SubprocessEnvironment(timeout=30)
    await env.start(_host, {})
    try:
        result = await env.execute("llm_query('object')")
        assert result.error is not None and "HostCallError" in result.error and "JSON" in result.error
        with pytest.raises(ConfigurationError, match="context of type set"):
            await env.load_context(0, {1, 2})
    finally:
        await env.close()


async def test_clashing_tool_names_and_bad_settings_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="clashes"):
        await SubprocessEnvironment().start(_host, {"llm_query": print})
    with pytest.raises(ConfigurationError, match="unknown environment_kwargs"):
        SubprocessEnvironment(image="x")
    with pytest.raises(ConfigurationError, match="timeout"):
        SubprocessEnvironment(timeout=0)


async def test_a_runtime_that_cannot_start_gives_a_clear_error() -> None:
    env = SubprocessEnvironment(python="/bin/false", start_timeout=10)
    with pytest.raises(SandboxError, match="exited before it was ready"):
        await env.start(_host, {})
    env = SubprocessEnvironment(python="/no/such/python")
    with pytest.raises(SandboxError, match="could not start"):
        await env.start(_host, {})


async def test_use_before_start_and_after_close() -> None:
    env = SubprocessEnvironment()
    with pytest.raises(SandboxError, match="not started"):
        await env.execute("1")
    await env.start(_host, {})
    await env.close()
    with pytest.raises(SandboxError, match="closed"):
        await env.execute("1")
