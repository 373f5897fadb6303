"""The REPL runtime: runs code cells in one persistent namespace and reports what each cell did.

Stdlib only and Python >= 3.8, because this one file serves twice: the ``local`` environment imports
it in-process, and isolated environments copy it verbatim into the sandbox and run it there. Every
call back to the host (``llm_query``, ``rlm_query``, host-side tools) goes through ``call_host``.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import io
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

SCAFFOLD_FUNCTIONS = (
    "llm_query",
    "llm_query_batched",
    "rlm_query",
    "rlm_query_batched",
    "SHOW_VARS",
    "FINAL",
    "FINAL_VAR",
)
HOST_FUNCTIONS = ("llm_query", "llm_query_batched", "rlm_query", "rlm_query_batched")
RESERVED_NAMES = frozenset({*SCAFFOLD_FUNCTIONS, "answer", "context"})


def reserved_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a custom tool (it is an engine name or not an identifier), or None."""
    if name in RESERVED_NAMES or name.startswith(("context_", "history_")):
        return f"custom tool name {name!r} clashes with a built-in REPL name; rename it"
    if not name.isidentifier():
        return f"custom tool name {name!r} is not a Python identifier; rename it"
    return None


DEFAULT_MAX_OUTPUT_CHARS = 200_000


class CellTimeout(BaseException):
    """Raised inside a cell that ran past its time limit (BaseException so bare ``except:`` in model
    code is the only thing that can swallow it, and the runtime checks for that)."""


class HostCallError(RuntimeError):
    """A call to the host (``llm_query`` and friends) failed; the message says why."""


class _CappedBuffer(io.TextIOBase):
    """A text sink that keeps at most ``limit`` characters and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0
        self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            text = str(text)
        room = self.limit - self.size
        if room > 0:
            kept = text[:room]
            self.parts.append(kept)
            self.size += len(kept)
            self.dropped += len(text) - len(kept)
        else:
            self.dropped += len(text)
        return len(text)

    def getvalue(self) -> str:
        value = "".join(self.parts)
        if self.dropped:
            value += f"\n[... {self.dropped} more characters of output were not kept]"
        return value


class _ThreadRoutedStream(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: a thread capturing a cell writes to its own buffer,
    every other thread writes through to the real stream. Concurrent runs never see each other's output."""

    def __init__(self, fallback: Any) -> None:
        self.fallback = fallback
        self.local = threading.local()

    def _target(self) -> Any:
        return getattr(self.local, "buffer", None) or self.fallback

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        target = self._target()
        if hasattr(target, "flush"):
            target.flush()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.fallback, "encoding", "utf-8") or "utf-8"


_install_lock = threading.Lock()


def _routed(name: str) -> _ThreadRoutedStream:
    with _install_lock:
        current = getattr(sys, name)
        if not isinstance(current, _ThreadRoutedStream):
            current = _ThreadRoutedStream(current)
            setattr(sys, name, current)
        return current


def raise_in_thread(thread_id: int, exc_type: type = CellTimeout) -> bool:
    """Ask CPython to raise ``exc_type`` in another thread at its next bytecode. Returns success."""
    set_async_exc = getattr(getattr(ctypes, "pythonapi", None), "PyThreadState_SetAsyncExc", None)
    if set_async_exc is None:
        return False
    changed = set_async_exc(ctypes.c_ulong(thread_id), ctypes.py_object(exc_type))
    if changed > 1:  # more than one thread state touched: undo, as the C API asks
        set_async_exc(ctypes.c_ulong(thread_id), None)
        return False
    return changed == 1


def describe_value(value: Any) -> str:
    """A short type-and-size description, for SHOW_VARS and the model's context summary."""
    kind = type(value).__name__
    try:
        size = len(value)
    except Exception:
        return kind
    unit = "chars" if isinstance(value, str) else "items"
    return f"{kind}, {size} {unit}"


class ReplRuntime:
    """One persistent namespace plus the engine's scaffold functions.

    ``call_host(function, args)`` performs host calls (``llm_query`` ...) and returns their result
    or raises. ``tools`` are extra names: callables run locally, or names listed in
    ``host_tools`` are proxied to the host through ``call_host``.
    """

    def __init__(
        self,
        call_host: Callable[[str, dict[str, Any]], Any],
        tools: dict[str, Any] | None = None,
        host_tools: list[str] | None = None,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
    ) -> None:
        self.call_host = call_host
        self.max_output_chars = max_output_chars
        self.namespace: dict[str, Any] = {"__name__": "__rlm_repl__", "__builtins__": __builtins__}
        self.protected: dict[str, Any] = {}
        self.final_answer: str | None = None
        self.final_source: str | None = None  # final | final_var | answer_dict
        self._install_scaffold(tools or {}, host_tools or [])
        self.stdout = _routed("stdout")
        self.stderr = _routed("stderr")

    # -- scaffold ------------------------------------------------------------------------------

    def _install_scaffold(self, tools: dict[str, Any], host_tools: list[str]) -> None:
        def host(function: str) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                return self.call_host(function, {"args": list(args), "kwargs": kwargs})

            call.__name__ = function
            return call

        def typed(args: dict[str, Any], choices: Any, schema: Any, scores: bool = False) -> dict[str, Any]:
            # Sent only when given, so hosts that predate typed answers see the calls they know.
            if choices is not None:
                args["choices"] = list(choices) if isinstance(choices, (tuple, set, frozenset)) else choices
            if schema is not None:
                args["schema"] = schema
            if scores:
                args["scores"] = True
            return args

        def llm_query(
            prompt: Any,
            model: str | None = None,
            *,
            choices: Any = None,
            schema: Any = None,
            scores: bool = False,
        ) -> Any:
            """Ask a sub-model; returns its reply as a string, or with choices=[...] one of the
            choices, or with schema={...} (a JSON schema) a value matching it. With choices and
            scores=True: a dict of each choice's log-probability as the reply's first token (None
            when it is not among the model's most likely ones)."""
            args = typed({"prompt": prompt, "model": model}, choices, schema, scores)
            return self.call_host("llm_query", args)

        def llm_query_batched(
            prompts: list[Any],
            model: str | None = None,
            *,
            choices: Any = None,
            schema: Any = None,
            scores: bool = False,
        ) -> list[Any]:
            """Ask a sub-model many prompts concurrently; replies come back in order (typed or
            scored as in llm_query when choices=, schema= or scores=True is given)."""
            if isinstance(prompts, (str, bytes)):
                raise TypeError("llm_query_batched takes a list of prompts; use llm_query for one prompt")
            args = typed({"prompts": list(prompts), "model": model}, choices, schema, scores)
            return self.call_host("llm_query_batched", args)

        def rlm_query(prompt: Any, model: str | None = None) -> str:
            """Ask a child RLM (with its own REPL) when depth allows, else a plain sub-model call."""
            return self.call_host("rlm_query", {"prompt": prompt, "model": model})

        def rlm_query_batched(prompts: list[Any], model: str | None = None) -> list[str]:
            """Several rlm_query calls at once; replies come back in order."""
            if isinstance(prompts, (str, bytes)):
                raise TypeError("rlm_query_batched takes a list of prompts; use rlm_query for one prompt")
            return self.call_host("rlm_query_batched", {"prompts": list(prompts), "model": model})

        def SHOW_VARS() -> str:
            """List the variables you created, with their types and sizes."""
            names = self.user_variables()
            text = "\n".join(f"{n}: {describe_value(self.namespace[n])}" for n in names)
            text = text or "(no variables yet)"
            print(text)
            return text

        def FINAL(value: Any) -> str:
            """Give the final answer and finish."""
            self.final_answer = (
                value if isinstance(value, str) else repr(value) if value is None else str(value)
            )
            self.final_source = "final"
            return self.final_answer

        def FINAL_VAR(name: Any) -> str:
            """Give the value of a variable (by name) as the final answer and finish."""
            if isinstance(name, str):
                key = name.strip().strip("'\"")
                if key in self.namespace:
                    text = FINAL(self.namespace[key])
                    self.final_source = "final_var"
                    return text
                raise NameError(
                    f"FINAL_VAR({name!r}): no variable named {key!r}; create it first, or call FINAL(text)"
                )
            return FINAL(name)

        scaffold: dict[str, Any] = {
            "llm_query": llm_query,
            "llm_query_batched": llm_query_batched,
            "rlm_query": rlm_query,
            "rlm_query_batched": rlm_query_batched,
            "SHOW_VARS": SHOW_VARS,
            "FINAL": FINAL,
            "FINAL_VAR": FINAL_VAR,
        }
        for name in host_tools:
            scaffold[name] = host(name)
        scaffold.update(tools)
        self.namespace.update(scaffold)
        self.protected.update(scaffold)
        self.namespace["answer"] = {"content": "", "ready": False}

    def set_variable(self, name: str, value: Any, protect: bool = True) -> None:
        """Bind ``name`` (no copy). Protected names are restored if a cell rebinds them."""
        self.namespace[name] = value
        if protect:
            self.protected[name] = value

    def user_variables(self) -> list[str]:
        hidden = set(self.protected) | {"answer", "__name__", "__builtins__"}
        return sorted(n for n in self.namespace if n not in hidden and not n.startswith("_"))

    # -- execution -----------------------------------------------------------------------------

    def execute(self, code: str) -> dict[str, Any]:
        """Run one cell in the calling thread; returns a plain dict (it crosses process boundaries)."""
        out = _CappedBuffer(self.max_output_chars)
        err = _CappedBuffer(self.max_output_chars)
        self.final_answer = None
        self.final_source = None
        error: str | None = None
        timed_out = False
        started = time.perf_counter()
        self.stdout.local.buffer = out
        self.stderr.local.buffer = err
        try:
            self._run(code)
        except CellTimeout:
            timed_out = True
            error = "TimeoutError: the cell ran past its time limit and was interrupted"
        except SystemExit as exc:
            error = f"SystemExit({exc.code!r}): exiting is not allowed in the REPL; call FINAL(...) to finish"
        except KeyboardInterrupt:
            error = "KeyboardInterrupt"
        except Exception:
            error = self._format_exception()
        finally:
            self.stdout.local.buffer = None
            self.stderr.local.buffer = None
        restored = self._restore_protected()
        final, source = self.final_answer, self.final_source
        answer = self.namespace.get("answer")
        if final is None and isinstance(answer, dict) and answer.get("ready"):
            content = answer.get("content", "")
            final = content if isinstance(content, str) else str(content)
            source = "answer_dict"
            answer["ready"] = False  # consumed: a later turn (persistent mode) starts unfinished
        if not isinstance(answer, dict):
            self.namespace["answer"] = {"content": "", "ready": False}
        return {
            "stdout": out.getvalue(),
            "stderr": err.getvalue(),
            "error": error,
            "final_answer": final,
            "final_source": source if final is not None else None,
            "duration": time.perf_counter() - started,
            "timed_out": timed_out,
            "restored": restored,
            "variables": [[n, describe_value(self.namespace[n])] for n in self.user_variables()],
        }

    def _run(self, code: str) -> None:
        """Exec the cell; if its last statement is an expression, print its value like a REPL."""
        tree = ast.parse(code, filename="<repl>", mode="exec")
        last_expr = None
        last = tree.body[-1] if tree.body else None
        if isinstance(last, ast.Expr):
            tree.body.pop()
            last_expr = ast.Expression(last.value)
        if tree.body:
            exec(compile(tree, "<repl>", "exec"), self.namespace)
        if last_expr is not None:
            value = eval(compile(last_expr, "<repl>", "eval"), self.namespace)
            if value is not None and self.final_answer is None:
                print(repr(value) if not isinstance(value, str) else value)

    def _format_exception(self) -> str:
        kind, value, tb = sys.exc_info()
        frames = [f for f in traceback.extract_tb(tb) if f.filename == "<repl>"]
        lines = ["Traceback (most recent call last):\n"] if frames else []
        lines += traceback.format_list(frames)
        lines += traceback.format_exception_only(kind, value)
        return "".join(lines).rstrip()

    def _restore_protected(self) -> list[str]:
        restored = []
        for name, value in self.protected.items():
            if self.namespace.get(name, _MISSING) is not value:
                self.namespace[name] = value
                restored.append(name)
        return restored


_MISSING = object()


# -- the sandbox side of the protocol ------------------------------------------------------------
#
# When this file runs as a script inside a sandbox it speaks framed JSON over stdin/stdout: each
# frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON (one object with a
# "type"). Host -> sandbox: init, exec, context, history, reply, shutdown. Sandbox -> host: ready,
# call, result, log. See rlm_core/environments/sandbox.py for the host side.

PROTOCOL_VERSION = 1
FRAME_HEADER_BYTES = 4
MAX_FRAME_BYTES = 1 << 30


def encode_frame(message: dict[str, Any]) -> bytes:
    """One protocol frame: 4-byte big-endian length, then UTF-8 JSON."""
    import json

    try:
        body = json.dumps(message, ensure_ascii=False, default=_json_fallback).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: JSON escapes (\udXXX) carry it exactly
        body = json.dumps(message, ensure_ascii=True, default=_json_fallback).encode("ascii")
    return len(body).to_bytes(FRAME_HEADER_BYTES, "big") + body


def _json_fallback(value: Any) -> Any:
    # Values the model passes to llm_query that JSON cannot hold travel as their text form.
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class _Channel:
    """The framed byte channel to the host: thread-safe writes, blocking reads on the main thread."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        import os

        self._os = os
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.write_lock = threading.Lock()
        self.closed = False

    def send(self, message: dict[str, Any]) -> None:
        data = encode_frame(message)
        with self.write_lock:
            if self.closed:
                return
            view = memoryview(data)
            while view:
                written = self._os.write(self.write_fd, view)
                view = view[written:]

    def _read_exact(self, size: int) -> bytes | None:
        chunks = []
        remaining = size
        while remaining:
            chunk = self._os.read(self.read_fd, min(remaining, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def receive(self) -> dict[str, Any] | None:
        """The next message, or None when the host closed the stream."""
        import json

        header = self._read_exact(FRAME_HEADER_BYTES)
        if header is None:
            return None
        size = int.from_bytes(header, "big")
        if size > MAX_FRAME_BYTES:
            raise ValueError(f"frame of {size} bytes is larger than the {MAX_FRAME_BYTES}-byte limit")
        body = self._read_exact(size)
        if body is None:
            return None
        return json.loads(body.decode("utf-8"))


class _PendingCall:
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: str | None = None


class SandboxServer:
    """Serves one host over a channel: runs cells in a worker thread, forwards host calls."""

    def __init__(self, channel: _Channel, max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS) -> None:
        self.channel = channel
        self.max_output_chars = max_output_chars
        self.runtime: ReplRuntime | None = None
        self.pending: dict[str, _PendingCall] = {}
        self.pending_lock = threading.Lock()
        self.call_counter = 0
        self.cell_thread: threading.Thread | None = None

    # -- host calls (run in cell threads and in threads user code starts) ------------------------

    def call_host(self, function: str, args: dict[str, Any]) -> Any:
        with self.pending_lock:
            self.call_counter += 1
            call_id = f"c{self.call_counter}"
            pending = _PendingCall()
            self.pending[call_id] = pending
        try:
            self.channel.send({"type": "call", "id": call_id, "function": function, "args": args})
            # Short waits so a cell timeout (an async exception) can interrupt a cell stuck on a call.
            while not pending.done.wait(0.05):
                pass
        finally:
            with self.pending_lock:
                self.pending.pop(call_id, None)
        if pending.error is not None:
            raise HostCallError(pending.error)
        return pending.result

    def _on_reply(self, message: dict[str, Any]) -> None:
        with self.pending_lock:
            pending = self.pending.get(str(message.get("id")))
        if pending is None:
            return  # the call was abandoned (its cell timed out)
        if "error" in message and message["error"] is not None:
            pending.error = str(message["error"])
        else:
            pending.result = message.get("result")
        pending.done.set()

    # -- requests from the host ----------------------------------------------------------------

    def _ensure_runtime(self) -> ReplRuntime:
        if self.runtime is None:
            self.runtime = ReplRuntime(self.call_host, max_output_chars=self.max_output_chars)
        return self.runtime

    def _on_init(self, message: dict[str, Any]) -> None:
        self.max_output_chars = int(message.get("max_output_chars") or self.max_output_chars)
        self.runtime = ReplRuntime(
            self.call_host,
            tools=dict(message.get("variables") or {}),
            host_tools=list(message.get("host_tools") or []),
            max_output_chars=self.max_output_chars,
        )

    def _on_context(self, message: dict[str, Any]) -> None:
        runtime = self._ensure_runtime()
        if message.get("path"):
            shape: dict[str, Any] = {key: int(message[key]) for key in ("chars", "widest") if key in message}
            value = _read_context_file(str(message["path"]), str(message.get("format", "text")), shape)
        else:
            value = message.get("value")
        index = int(message.get("index", 0))
        runtime.set_variable(f"context_{index}", value)
        runtime.set_variable("context", value)

    def _on_history(self, message: dict[str, Any]) -> None:
        runtime = self._ensure_runtime()
        runtime.set_variable("history_{}".format(int(message.get("index", 0))), message.get("messages") or [])

    def _acknowledge(self, message: dict[str, Any], handler: Callable[[dict[str, Any]], None]) -> None:
        error = None
        try:
            handler(message)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.channel.send({"type": "result", "id": message.get("id"), "error": error})

    def _on_exec(self, message: dict[str, Any]) -> None:
        runtime = self._ensure_runtime()
        code = str(message.get("code", ""))
        timeout = message.get("timeout")
        cell_id = message.get("id")

        def work() -> None:
            watchdog = None
            if timeout:
                me = threading.get_ident()
                watchdog = threading.Timer(float(timeout), raise_in_thread, args=(me,))
                watchdog.daemon = True
                watchdog.start()
            try:
                raw = runtime.execute(code)
            except BaseException as exc:  # a timeout landing between cells, or a runtime bug
                raw = {
                    "error": f"{type(exc).__name__}: {exc}",
                    "timed_out": isinstance(exc, CellTimeout),
                }
            finally:
                if watchdog is not None:
                    watchdog.cancel()
            if _FORK_STATE["child"]:
                # User code forked and this is the copy: it must not answer the host, nor live on.
                import os

                os._exit(0)
            if _FORK_STATE["forked"]:
                # Processes a cell started do not outlive it: a fork bomb's copies would otherwise
                # keep the sandbox's process table full and starve the next cell.
                _FORK_STATE["forked"] = False
                killed = _kill_stray_processes()
                if killed:
                    note = f"\n[{killed} process(es) started by this cell were stopped when it ended]"
                    raw["stderr"] = (raw.get("stderr") or "") + note
            raw["type"] = "result"
            raw["id"] = cell_id
            self.channel.send(raw)

        # A fresh daemon thread per cell keeps the main thread free to route replies to its calls.
        self.cell_thread = threading.Thread(target=work, name="rlm-cell", daemon=True)
        # Starting a thread fails while the process limit is exhausted (a fork bomb's copies are
        # still exiting): wait a little for them rather than failing the cell at once.
        for _ in range(50):
            try:
                self.cell_thread.start()
                return
            except RuntimeError:
                time.sleep(0.1)
        self.channel.send(
            {
                "type": "result",
                "id": cell_id,
                "error": "RuntimeError: could not start a thread for this cell: the sandbox has too many "
                "processes or threads (code from an earlier cell may still be forking). Retry later.",
            }
        )

    def serve(self) -> int:
        import os
        import platform

        self.channel.send(
            {
                "type": "ready",
                "protocol": PROTOCOL_VERSION,
                "pid": os.getpid(),
                "python": platform.python_version(),
            }
        )
        while True:
            message = self.channel.receive()
            if message is None:
                return 0
            kind = message.get("type")
            if kind == "reply":
                self._on_reply(message)
            elif kind == "exec":
                self._on_exec(message)
            elif kind == "context":
                self._acknowledge(message, self._on_context)
            elif kind == "history":
                self._acknowledge(message, self._on_history)
            elif kind == "init":
                self._acknowledge(message, self._on_init)
            elif kind == "shutdown":
                return 0
            else:
                self.channel.send({"type": "log", "level": "warning", "message": f"unknown message {kind!r}"})


def _read_context_file(path: str, fmt: str, shape: dict[str, Any] | None = None) -> Any:
    if fmt == "json-lines":
        return _read_json_lines(path)
    if fmt == "json":
        import json

        with open(path, encoding="utf-8", errors="surrogatepass") as handle:
            return json.load(handle)
    return _read_text_file(path, shape or {})


# -- reading large contexts with a peak near the final value's own size --------------------------
#
# Reading a file and decoding it holds the bytes and the str at once (2x the context). Instead the
# text is decoded twice in chunks: once to learn its length and widest character, once to copy each
# chunk into a str allocated at its final size (PyUnicode_New, the way C extensions build strings).

_CONTEXT_READ_BYTES = 1 << 20
# How a chunk is written into a str of each storage width (1, 2 or 4 bytes per character).
_WIDTH_CODECS = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}
_STR_LAYOUT: dict[int, bool] = {}


def _decoded_chunks(path: str) -> Any:
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as handle:
        while True:
            data = handle.read(_CONTEXT_READ_BYTES)
            text = decoder.decode(data, final=not data)
            if text:
                yield text
            if not data:
                return


def _widest_possible(text: str) -> int:
    """The largest character ``text``'s storage width can hold: it picks the width of the whole str.

    Read from the str's size, because max(text) walks every character in Python (seconds per GB).
    """
    width = (sys.getsizeof(text) - _data_offset(255)) // (len(text) + 1)
    return {1: 0xFF, 2: 0xFFFF, 4: 0x10FFFF}.get(width) or ord(max(text))


def _str_width(widest: int) -> int:
    return 1 if widest < 256 else 2 if widest < 65536 else 4


def _new_str(length: int, widest: int) -> Any:
    """A fresh, unshared str of ``length`` characters (contents undefined) and where its data starts."""
    new = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_ssize_t, ctypes.c_uint32)(
        ("PyUnicode_New", ctypes.pythonapi)
    )
    value = new(length, widest)
    return value, id(value) + _data_offset(widest)


def _data_offset(widest: int) -> int:
    # Compact ASCII strings keep their characters right after a smaller header than the others.
    return sys.getsizeof("") - 1 if widest < 128 else sys.getsizeof("\xe9" * 2) - 3


def _fill_str_works(widest: int) -> bool:
    """Check once per layout, on a small str, that writing at the computed address gives that text."""
    key = 0 if widest < 128 else _str_width(widest)
    if key not in _STR_LAYOUT:
        sample = "".join(chr(c) for c in (65, 66, max(widest, 67), 68))
        try:
            value, address = _new_str(len(sample), max(map(ord, sample)))
            data = sample.encode(_WIDTH_CODECS[_str_width(widest)])
            ctypes.memmove(address, data, len(data))
            _STR_LAYOUT[key] = value == sample
        except Exception:
            _STR_LAYOUT[key] = False
    return _STR_LAYOUT[key]


def _read_text_file(path: str, shape: dict[str, Any]) -> str:
    text = _read_text_in_place(path, shape.get("chars"), shape.get("widest"))
    if text is not None:
        return text
    with open(path, encoding="utf-8", newline="") as handle:
        return handle.read()


def _read_text_in_place(path: str, length: int | None = None, widest: int | None = None) -> str | None:
    """The file's text built in one str of its final size; None where that cannot be done.

    ``length`` and ``widest`` come from the host, which knows them; without them a first pass over
    the file finds them. Either way the file is checked against them while it is copied.
    """
    if length is None or widest is None:
        length, widest = 0, 0
        for text in _decoded_chunks(path):
            length += len(text)
            if not text.isascii():
                widest = max(widest, _widest_possible(text))
    if length < 1024 or sys.implementation.name != "cpython" or not _fill_str_works(widest):
        return None  # small: the plain read costs nothing worth saving
    value, address = _new_str(length, widest)
    width = _str_width(widest)
    codec = "ascii" if widest < 128 else _WIDTH_CODECS[width]
    filled, seen = 0, 0
    try:
        for text in _decoded_chunks(path):
            data = text.encode(codec)
            if len(data) != len(text) * width or filled + len(text) > length:
                return None  # the file does not match the expected length and width
            ctypes.memmove(address + filled * width, data, len(data))
            filled += len(text)
            if not text.isascii():
                seen = max(seen, _widest_possible(text))
    except UnicodeEncodeError:
        return None  # wider characters than expected
    # CPython compares strs by storage width first: the str must be exactly as wide as its contents.
    canonical = (seen < 128) == (widest < 128) and (seen < 128 or _str_width(seen) == width)
    return value if filled == length and canonical else None


def _read_json_lines(path: str) -> Any:
    """The host's streamed JSON: a first line naming the shape, then one JSON value per line."""
    import json

    with open(path, "rb") as handle:
        shape = handle.readline().strip()
        lines = (line for line in handle if line.strip())
        if shape == b"list":
            items: list[Any] = []
            for line in lines:
                items.extend(json.loads(line))  # each line is an array of the next items
            return items
        if shape == b"dict":
            entries: dict[str, Any] = {}
            for line in lines:
                entries.update(json.loads(line))  # each line is an object of the next entries
            return entries
        if shape == b"value":
            return json.loads(b"".join(lines))
    raise ValueError(f"context file {path} has an unknown shape {shape!r}; expected list, dict or value")


_FORK_STATE = {"child": False, "forked": False}


def _mark_forked_child() -> None:
    _FORK_STATE["child"] = True


def _mark_forked_parent() -> None:
    _FORK_STATE["forked"] = True


def _kill_stray_processes(deadline_seconds: float = 5.0) -> int:
    """SIGKILL every other process of this runtime's process group (the runtime leads it); returns
    how many were signalled. Reads /proc, so it does nothing where there is none."""
    import os
    import signal

    me = os.getpid()
    group = os.getpgid(0)
    if group != me or not os.path.isdir("/proc"):
        return 0  # not our own group: never signal processes we did not start
    killed: set = set()
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        found = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    stat = handle.read()
                # Fields after the parenthesised command name: state, ppid, pgrp, ...
                fields = stat[stat.rfind(b")") + 2 :].split()
                if int(fields[2]) != group or fields[0] == b"Z":
                    continue
                os.kill(int(entry), signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                continue
            found = True
            killed.add(entry)
        if not found:
            break
        time.sleep(0.01)
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    return len(killed)


def main(argv: list[str] | None = None) -> int:
    """Run as the sandbox runtime: framed JSON on stdin/stdout until EOF or ``shutdown``."""
    import argparse
    import os

    parser = argparse.ArgumentParser(
        description="rlm-core sandbox runtime (speaks framed JSON on stdin/stdout)"
    )
    parser.add_argument("--max-output-chars", type=int, default=DEFAULT_MAX_OUTPUT_CHARS)
    options = parser.parse_args(argv)

    # Own process group, so the host can kill everything the cells started with one signal.
    # (Already a group leader when the transport started a new session for us.)
    with contextlib.suppress(OSError):
        os.setsid()
    # The channel keeps private copies of fds 0 and 1; fd 1 then points at stderr so stray writes
    # (C extensions, child processes, threads after their cell ended) can never corrupt a frame.
    read_fd = os.dup(0)
    write_fd = os.dup(1)
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # user code reading stdin gets EOF, not protocol bytes
    os.close(devnull)
    for fd in (read_fd, write_fd):
        os.set_inheritable(fd, False)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), write_through=True)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_mark_forked_child, after_in_parent=_mark_forked_parent)

    channel = _Channel(read_fd, write_fd)
    server = SandboxServer(channel, max_output_chars=options.max_output_chars)
    try:
        code = server.serve()
    except Exception as exc:
        sys.stderr.write(f"rlm runtime: fatal {type(exc).__name__}: {exc}\n")
        code = 1
    sys.stderr.flush()
    # os._exit: a cell thread stuck in C code must not keep the process alive after the host left.
    os._exit(code)
    return code  # pragma: no cover


if __name__ == "__main__":
    main()
