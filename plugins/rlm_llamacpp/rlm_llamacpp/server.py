"""The in-process llama.cpp server (xllamacpp): one per (model file, n_ctx, threads, slots) per
process, started once on 127.0.0.1 and shared by every client and call, stopped at exit."""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import attrs

from rlm_core.errors import ConfigurationError, RLMError
from rlm_llamacpp.models import check_gguf

__all__ = [
    "DEFAULT_N_CTX",
    "DEFAULT_SLOT_CTX",
    "LlamaServer",
    "LlamaServerError",
    "get_server",
    "running_servers",
    "server_settings",
    "shutdown_servers",
]

DEFAULT_N_CTX = 16384
# llama.cpp splits n_ctx evenly across its slots; the RLM root prompt plus a few turns of REPL
# output needs about 8k tokens, so the default slot count keeps at least this much per slot.
DEFAULT_SLOT_CTX = 8192
MAX_DEFAULT_SLOTS = 4
MIN_SLOT_CTX = 512
READY_TIMEOUT = 300.0  # loading a multi-GB model from a cold disk can be slow


class LlamaServerError(RLMError):
    """The embedded llama.cpp server could not be started or stopped."""


@attrs.define(frozen=True)
class ServerKey:
    """What makes two servers different; equal keys share one server."""

    model_path: str
    n_ctx: int
    n_threads: int
    n_parallel: int


@attrs.define(eq=False)
class LlamaServer:
    """A running llama.cpp server. ``address`` is its root URL (``http://127.0.0.1:PORT``)."""

    key: ServerKey
    alias: str
    address: str
    slot_ctx: int  # the context each request may use, as the server itself reports it
    handle: Any = attrs.field(repr=False)
    pid: int = attrs.field(factory=os.getpid)

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root (``<address>/v1``)."""
        return f"{self.address}/v1"

    @property
    def running(self) -> bool:
        return self.handle is not None and self.pid == os.getpid()

    def stop(self) -> None:
        # Dropping the last reference runs xllamacpp's destructor, which ends the server's main loop,
        # closes the listening socket and frees the model.
        self.handle = None


_servers: dict[ServerKey, LlamaServer] = {}
_lock = threading.Lock()
# Servers inherited through fork(): their threads do not exist in the child, so running their
# destructor there would hang. They are kept referenced and never touched.
_inherited: list[LlamaServer] = []


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(f"llamacpp: {name} must be a positive integer, got {value!r}.")
    return value


def server_settings(
    n_ctx: int | None = None, n_threads: int | None = None, n_parallel: int | None = None
) -> tuple[int, int, int]:
    """Fill in defaults and validate: returns ``(n_ctx, n_threads, n_parallel)``.

    ``n_ctx`` defaults to 16384, ``n_threads`` to ``os.cpu_count()``, ``n_parallel`` (slots) to as
    many as keep 8192 tokens each, between 1 and 4. Each request gets ``n_ctx // n_parallel`` tokens.
    """
    ctx = DEFAULT_N_CTX if n_ctx is None else _positive_int("n_ctx", n_ctx)
    threads = (os.cpu_count() or 1) if n_threads is None else _positive_int("n_threads", n_threads)
    if n_parallel is None:
        slots = max(1, min(MAX_DEFAULT_SLOTS, ctx // DEFAULT_SLOT_CTX))
    else:
        slots = _positive_int("n_parallel", n_parallel)
    if ctx // slots < MIN_SLOT_CTX:
        raise ConfigurationError(
            f"llamacpp: n_ctx={ctx} split over n_parallel={slots} slots leaves {ctx // slots} tokens per "
            f"request; at least {MIN_SLOT_CTX} are needed (the RLM root prompt wants about "
            f"{DEFAULT_SLOT_CTX}). Raise n_ctx or lower n_parallel."
        )
    return ctx, threads, slots


def _get_json(url: str, timeout: float) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None


def _wait_ready(address: str, deadline: float) -> int | None:
    """Poll ``/health`` until the model is loaded; return the per-slot context from ``/v1/models``."""
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, _ = _get_json(f"{address}/health", timeout=5)
            if status == 200:
                _, models = _get_json(f"{address}/v1/models", timeout=5)
                try:
                    return int(models["data"][0]["meta"]["n_ctx"])
                except (KeyError, IndexError, TypeError, ValueError):
                    return None
            last = f"HTTP {status}"  # 503 while the model loads
        except (OSError, ValueError) as exc:
            last = exc
        time.sleep(0.1)
    raise LlamaServerError(
        f"the llama.cpp server at {address} did not become ready within {READY_TIMEOUT:g}s (last answer: "
        f"{last}). The model may be too large for this machine's memory; try a smaller n_ctx."
    )


def _start(key: ServerKey, alias: str, verbose: bool) -> LlamaServer:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = key.model_path
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # the OS picks a free port; several processes never collide
    params.n_ctx = key.n_ctx
    params.n_parallel = key.n_parallel
    params.cpuparams.n_threads = key.n_threads
    params.cpuparams_batch.n_threads = key.n_threads
    params.model_alias = {alias}
    if not verbose:
        params.verbosity = 0  # llama.cpp logs every request at its default level
    try:
        handle = xllamacpp.Server(params)
    except Exception as exc:
        raise LlamaServerError(
            f"llama.cpp could not start a server for {key.model_path} (n_ctx={key.n_ctx}, "
            f"n_parallel={key.n_parallel}): {exc}. Expected a valid GGUF model that fits in memory; "
            "set RLM_LLAMACPP_VERBOSE=1 to see llama.cpp's own log."
        ) from exc
    address = str(handle.listening_address).rstrip("/")
    try:
        slot_ctx = _wait_ready(address, time.monotonic() + READY_TIMEOUT)
    except BaseException:
        del handle
        raise
    return LlamaServer(
        key=key,
        alias=alias,
        address=address,
        slot_ctx=slot_ctx or key.n_ctx // key.n_parallel,
        handle=handle,
    )


def get_server(
    model_path: str | os.PathLike[str],
    *,
    n_ctx: int | None = None,
    n_threads: int | None = None,
    n_parallel: int | None = None,
    alias: str = "local",
    verbose: bool | None = None,
) -> LlamaServer:
    """The shared server for this model and settings, started (once, under a lock) if needed.

    ``alias`` is the model name the server answers to; only the first caller's alias is used,
    and llama.cpp serves its one model whatever name a request carries. ``verbose`` (default:
    ``$RLM_LLAMACPP_VERBOSE``) keeps llama.cpp's own log on stderr. Raises ``ModelFileError`` for a
    path that is not a GGUF file and ``LlamaServerError`` if llama.cpp fails to start.
    """
    path = check_gguf(model_path)
    ctx, threads, slots = server_settings(n_ctx, n_threads, n_parallel)
    key = ServerKey(str(path), ctx, threads, slots)
    if verbose is None:
        verbose = os.environ.get("RLM_LLAMACPP_VERBOSE", "").lower() in {"1", "true", "yes", "on"}
    with _lock:
        server = _servers.get(key)
        if server is not None and server.running:
            return server
        if server is not None and server.pid != os.getpid():
            _inherited.append(server)
        server = _servers[key] = _start(key, alias, verbose)
        return server


def running_servers() -> list[LlamaServer]:
    """The servers this process started and has not stopped."""
    with _lock:
        return [s for s in _servers.values() if s.running]


def shutdown_servers() -> None:
    """Stop every server this process started. Clients start a new one on their next call."""
    with _lock:
        servers = list(_servers.values())
        _servers.clear()
    for server in servers:
        if server.pid == os.getpid():
            server.stop()
        else:
            _inherited.append(server)


atexit.register(shutdown_servers)
