"""Large contexts stream into sandboxes: chunked on the host, rebuilt in one str or item by item inside.

Chunk sizes are shrunk so small contexts cross many chunk boundaries; the memory figures themselves
are measured in bench/bench_sandbox.py, not asserted here.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rlm_core.environments import context_files
from rlm_core.environments import runtime as repl_runtime
from rlm_core.environments.context_files import ContextFile
from rlm_core.environments.sandbox import SandboxEnvironment
from rlm_core.environments.subprocess_env import ProcessStream, SubprocessTransport
from rlm_core.errors import ConfigurationError, SandboxError

# Every storage width a str can have, with multi-byte UTF-8 characters landing on chunk boundaries.
TEXTS = {
    "ascii": "plain ascii text " * 400,
    "latin-1": "caf\xe9 na\xefve \xfc" * 500,
    "two-byte": "ab\u4e2d\u6587\u0100" * 900,
    "astral": "a\U0001f600\xe9\u4e2d" * 700,
}


async def _host(function: str, args: dict[str, Any]) -> Any:
    raise RuntimeError(function)


@pytest.mark.parametrize("name", sorted(TEXTS))
@pytest.mark.parametrize("read_bytes", [1, 5, 4096])
def test_the_runtime_rebuilds_text_in_place_across_read_boundaries(
    name: str, read_bytes: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(repl_runtime, "_CONTEXT_READ_BYTES", read_bytes)
    path = tmp_path / "context.txt"
    path.write_bytes(TEXTS[name].encode("utf-8"))
    shape = ContextFile(TEXTS[name]).text_shape()  # what the host tells the runtime
    for hints in ({}, shape):
        text = repl_runtime._read_text_in_place(str(path), hints.get("chars"), hints.get("widest"))
        assert text is not None, "the in-place path declined a valid UTF-8 file"
        assert text == TEXTS[name]
        assert len(text) == len(TEXTS[name]) and hash(text) == hash(TEXTS[name])
        assert sys.getsizeof(text) == sys.getsizeof(TEXTS[name]), "not stored at its canonical width"
        assert text + "!" == TEXTS[name] + "!"  # behaves as an ordinary str afterwards


@pytest.mark.parametrize(
    ("written", "hinted"), [("ascii", "latin-1"), ("latin-1", "two-byte"), ("astral", "two-byte")]
)
def test_a_file_that_does_not_match_the_hosts_shape_is_read_plainly(
    written: str, hinted: str, tmp_path: Path
) -> None:
    path = tmp_path / "context.txt"  # e.g. code in the sandbox rewrote the file before a restart
    path.write_bytes(TEXTS[written].encode("utf-8"))
    shape = ContextFile(TEXTS[hinted]).text_shape()
    shape["chars"] = len(TEXTS[written])
    assert repl_runtime._read_text_in_place(str(path), shape["chars"], shape["widest"]) is None
    text = repl_runtime._read_context_file(str(path), "text", shape)
    assert text == TEXTS[written] and sys.getsizeof(text) == sys.getsizeof(TEXTS[written])


def test_a_file_that_changes_between_passes_falls_back_to_a_plain_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "context.txt"
    path.write_text(TEXTS["ascii"], encoding="utf-8")
    passes: list[int] = []
    real = repl_runtime._decoded_chunks

    def changing(target: str) -> Iterator[str]:
        passes.append(1)
        for text in real(target):
            yield text if len(passes) == 1 else text.replace("p", "\u4e2d")

    monkeypatch.setattr(repl_runtime, "_decoded_chunks", changing)
    assert repl_runtime._read_text_in_place(str(path)) is None
    monkeypatch.setattr(repl_runtime, "_decoded_chunks", real)
    assert repl_runtime._read_context_file(str(path), "text") == TEXTS["ascii"]


def test_invalid_utf8_in_a_context_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "context.txt"
    path.write_bytes(b"valid start " * 200 + b"\xff\xfe")
    with pytest.raises(UnicodeDecodeError):
        repl_runtime._read_context_file(str(path), "text")


def test_host_chunks_never_split_a_character() -> None:
    text = TEXTS["astral"]
    contents = ContextFile(text, chunk_chars=7)
    chunks = list(contents)
    assert len(chunks) > 100
    assert all(chunk.decode("utf-8") for chunk in chunks)  # each chunk is valid UTF-8 on its own
    assert b"".join(chunks) == text.encode("utf-8")
    assert list(contents) == chunks, "a second pass yields the same bytes"
    assert contents.size is None and ContextFile("ascii").size == 5


@pytest.mark.parametrize(
    "value",
    [
        ["item \u4e2d", 1, 2.5, None, True, {"nested": ["x" * 50]}, "y" * 300, ("a", "tuple")],
        {"k\xe9y": "value \U0001f600", 1: [1, 2], "big": "z" * 300, "d": {"e": None}},
        ("only", "a", "tuple"),
        [],
        {},
    ],
    ids=["list", "dict", "tuple", "empty-list", "empty-dict"],
)
def test_json_lines_round_trip_like_json(value: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context_files, "ITEMS_PER_LINE", 3)
    path = tmp_path / "context.jsonl"
    path.write_bytes(b"".join(ContextFile(value, chunk_chars=16)))
    assert repl_runtime._read_context_file(str(path), "json-lines") == json.loads(json.dumps(value))


def test_at_least_chars_stops_early_and_checks_small_values() -> None:
    def endless() -> Iterator[str]:
        while True:
            yield "x" * 10

    class Endless(list[str]):
        def __iter__(self) -> Iterator[str]:
            return endless()

    assert ContextFile(Endless()).at_least_chars(1000)  # would never return if it encoded everything
    assert not ContextFile(["a", "b"]).at_least_chars(1000)
    with pytest.raises(ConfigurationError, match="context of type list"):
        ContextFile(["a", {1, 2}]).at_least_chars(1000)


class OnlyPutFile:
    """A transport with just the original contract (no put_file_chunks), over a real subprocess sandbox."""

    def __init__(self) -> None:
        self.inner = SubprocessTransport(memory_limit=None)
        self.python = self.inner.python
        self.uploads: list[int] = []

    @property
    def workdir(self) -> str:
        return self.inner.workdir

    async def start(self) -> None:
        await self.inner.start()

    async def put_file(self, path: str, data: bytes) -> None:
        self.uploads.append(len(data))
        await self.inner.put_file(path, data)

    async def open_stream(self, argv: list[str]) -> ProcessStream:
        return await self.inner.open_stream(argv)

    async def close(self) -> None:
        await self.inner.close()

    def describe(self) -> str:
        return "put_file-only transport"


class CountingChunks(SubprocessTransport):
    """The real subprocess transport, recording how many chunks each streamed upload took."""

    def __init__(self) -> None:
        super().__init__(memory_limit=None)
        self.chunk_counts: list[int] = []

    async def put_file_chunks(self, path: str, chunks: Iterable[bytes], size: int | None = None) -> None:
        seen: list[int] = []

        def counted() -> Iterator[bytes]:
            for chunk in chunks:
                seen.append(len(chunk))
                yield chunk

        await super().put_file_chunks(path, counted(), size)
        self.chunk_counts.append(len(seen))


LIST_CONTEXT = [f"line {i} \u4e2d\U0001f600" for i in range(400)] + [{"k": 1}, None, "w" * 3000]
DICT_CONTEXT = {f"key{i}": ["\xe9" * i, i] for i in range(200)} | {7: "int key"}
CHECK = (
    "import hashlib, json\n"
    "print(hashlib.sha256(json.dumps([context_0, context_1, context_2], sort_keys=True)"
    ".encode()).hexdigest())"
)


def _expected_digest() -> str:
    import hashlib

    value = json.loads(json.dumps([TEXTS["astral"] * 3, LIST_CONTEXT, DICT_CONTEXT]))
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


@pytest.mark.parametrize("transport_class", [CountingChunks, OnlyPutFile])
async def test_str_list_and_dict_contexts_stream_into_a_subprocess_sandbox(
    transport_class: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(context_files, "CHUNK_CHARS", 97)  # many chunks, odd boundaries
    monkeypatch.setattr(context_files, "ITEMS_PER_LINE", 7)
    transport = transport_class()
    env = SandboxEnvironment(transport, timeout=30, inline_context_chars=100)
    await env.start(_host, {})
    try:
        for index, value in enumerate([TEXTS["astral"] * 3, LIST_CONTEXT, DICT_CONTEXT]):
            await env.load_context(index, value)
        result = await env.execute(CHECK)
        assert result.error is None, result
        assert result.stdout.strip() == _expected_digest()
        if isinstance(transport, CountingChunks):
            script, *contexts = transport.chunk_counts  # put_file sends the runtime script as one chunk
            assert script == 1 and len(contexts) == 3 and min(contexts) > 10
            assert sorted(os.listdir(transport.workdir)) == [
                "context_0.txt",
                "context_1.jsonl",
                "context_2.jsonl",
                "rlm_runtime.py",
            ]
        else:
            assert len(transport.uploads) == 4  # the runtime script and three whole contexts
        # A crash restarts the runtime; the uploaded files are loaded again, not re-sent.
        crashed = await env.execute("import os; os._exit(3)")
        assert crashed.state_lost
        again = await env.execute(CHECK)
        assert again.stdout.strip() == _expected_digest()
    finally:
        await env.close()


async def test_reloading_an_index_uploads_the_new_value() -> None:
    env = SandboxEnvironment(SubprocessTransport(memory_limit=None), timeout=30, inline_context_chars=10)
    await env.start(_host, {})
    try:
        await env.load_context(0, "the first long context")
        await env.load_context(0, ["the second", "long context"])
        result = await env.execute("print(context_0)")
        assert result.stdout == "['the second', 'long context']\n"
    finally:
        await env.close()


async def test_an_unsendable_item_past_the_inline_limit_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(context_files, "CHUNK_CHARS", 50)
    env = SandboxEnvironment(SubprocessTransport(memory_limit=None), timeout=30, inline_context_chars=100)
    await env.start(_host, {})
    try:
        with pytest.raises(ConfigurationError, match="context of type list"):
            await env.load_context(0, ["fine"] * 200 + [object()])
        with pytest.raises(ConfigurationError, match="valid Unicode"):
            await env.load_context(1, "lone surrogate \ud800" * 20)
        assert (await env.execute("print(1)")).stdout == "1\n"  # the sandbox is still usable
    finally:
        await env.close()


def test_the_docker_tar_stream_is_a_valid_archive_built_from_chunks() -> None:
    from rlm_core.environments.docker_env import _TarStream

    chunks = [b"abc" * 1000, b"", "\u4e2d".encode() * 333, b"z"]
    data = b"".join(chunks)
    stream = _TarStream("rlm/context_0.txt", chunks, len(data), ["rlm"])
    raw = b""
    while piece := stream.read(777):
        raw += piece
    assert len(raw) == len(stream)
    with tarfile.open(fileobj=io.BytesIO(raw)) as archive:
        member = archive.extractfile("rlm/context_0.txt")
        assert member is not None and member.read() == data
    short = _TarStream("f", [b"abc"], 10, [])
    with pytest.raises(SandboxError, match="changed while it was sent"):
        while short.read(4096):
            pass


_IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.mark.skipif(
    not os.environ.get("DOCKER_HOST") and not _IN_CI,
    reason="DOCKER_HOST is unset; run scripts/setup-podman.sh and export what it prints",
)
async def test_contexts_stream_into_a_docker_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    from rlm_core.environments.docker_env import DockerTransport

    monkeypatch.setattr(context_files, "CHUNK_CHARS", 997)
    transport = DockerTransport(os.environ.get("RLM_TEST_IMAGE", "rlm-test-python:3.11"), pull=False)
    env = SandboxEnvironment(transport, timeout=60, inline_context_chars=100)
    await env.start(_host, {})
    try:
        for index, value in enumerate([TEXTS["astral"] * 3, LIST_CONTEXT, DICT_CONTEXT]):
            await env.load_context(index, value)  # none has a known size: the tar needs a counting pass
        result = await env.execute(CHECK)
        assert result.error is None, result
        assert result.stdout.strip() == _expected_digest()
    finally:
        await env.close()
