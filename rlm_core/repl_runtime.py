"""The REPL runtime: runs code cells in one persistent namespace and reports what each cell did.

Stdlib only and Python >= 3.8, because this one file serves twice: the ``local`` environment imports
it in-process, and isolated environments copy it verbatim into the sandbox and run it there. Every
call back to the host (``llm_query``, ``rlm_query``, host-side tools) goes through ``call_host``.
"""

from __future__ import annotations

import ast
import ctypes
import io
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional

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
        self.parts: List[str] = []
        self.size = 0
        self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:  # type: ignore[override]
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
            value += "\n[... %d more characters of output were not kept]" % self.dropped
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

    def write(self, text: str) -> int:  # type: ignore[override]
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
    return "%s, %d %s" % (kind, size, unit)


class ReplRuntime:
    """One persistent namespace plus the engine's scaffold functions.

    ``call_host(function, args)`` performs host calls (``llm_query`` ...) and returns their result
    or raises. ``tools`` are extra names: callables run locally, or names listed in
    ``host_tools`` are proxied to the host through ``call_host``.
    """

    def __init__(
        self,
        call_host: Callable[[str, Dict[str, Any]], Any],
        tools: Optional[Dict[str, Any]] = None,
        host_tools: Optional[List[str]] = None,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
    ) -> None:
        self.call_host = call_host
        self.max_output_chars = max_output_chars
        self.namespace: Dict[str, Any] = {"__name__": "__rlm_repl__", "__builtins__": __builtins__}
        self.protected: Dict[str, Any] = {}
        self.final_answer: Optional[str] = None
        self._install_scaffold(tools or {}, host_tools or [])
        self.stdout = _routed("stdout")
        self.stderr = _routed("stderr")

    # -- scaffold ------------------------------------------------------------------------------

    def _install_scaffold(self, tools: Dict[str, Any], host_tools: List[str]) -> None:
        def host(function: str) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                return self.call_host(function, {"args": list(args), "kwargs": kwargs})

            call.__name__ = function
            return call

        def llm_query(prompt: Any, model: Optional[str] = None) -> str:
            """Ask a sub-model; returns its reply as a string."""
            return self.call_host("llm_query", {"prompt": prompt, "model": model})

        def llm_query_batched(prompts: List[Any], model: Optional[str] = None) -> List[str]:
            """Ask a sub-model many prompts concurrently; replies come back in order."""
            if isinstance(prompts, (str, bytes)):
                raise TypeError("llm_query_batched takes a list of prompts; use llm_query for one prompt")
            return self.call_host("llm_query_batched", {"prompts": list(prompts), "model": model})

        def rlm_query(prompt: Any, model: Optional[str] = None) -> str:
            """Ask a child RLM (with its own REPL) when depth allows, else a plain sub-model call."""
            return self.call_host("rlm_query", {"prompt": prompt, "model": model})

        def rlm_query_batched(prompts: List[Any], model: Optional[str] = None) -> List[str]:
            """Several rlm_query calls at once; replies come back in order."""
            if isinstance(prompts, (str, bytes)):
                raise TypeError("rlm_query_batched takes a list of prompts; use rlm_query for one prompt")
            return self.call_host("rlm_query_batched", {"prompts": list(prompts), "model": model})

        def SHOW_VARS() -> str:  # noqa: N802 - the name the prompts teach
            """List the variables you created, with their types and sizes."""
            names = self.user_variables()
            text = "\n".join("%s: %s" % (n, describe_value(self.namespace[n])) for n in names)
            text = text or "(no variables yet)"
            print(text)
            return text

        def FINAL(value: Any) -> str:  # noqa: N802
            """Give the final answer and finish."""
            self.final_answer = value if isinstance(value, str) else repr(value) if value is None else str(value)
            return self.final_answer

        def FINAL_VAR(name: Any) -> str:  # noqa: N802
            """Give the value of a variable (by name) as the final answer and finish."""
            if isinstance(name, str):
                key = name.strip().strip("'\"")
                if key in self.namespace:
                    return FINAL(self.namespace[key])
                raise NameError(
                    "FINAL_VAR(%r): no variable named %r; create it first, or call FINAL(text)" % (name, key)
                )
            return FINAL(name)

        scaffold: Dict[str, Any] = {
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

    def user_variables(self) -> List[str]:
        hidden = set(self.protected) | {"answer", "__name__", "__builtins__"}
        return sorted(n for n in self.namespace if n not in hidden and not n.startswith("_"))

    # -- execution -----------------------------------------------------------------------------

    def execute(self, code: str) -> Dict[str, Any]:
        """Run one cell in the calling thread; returns a plain dict (it crosses process boundaries)."""
        out = _CappedBuffer(self.max_output_chars)
        err = _CappedBuffer(self.max_output_chars)
        self.final_answer = None
        error: Optional[str] = None
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
            error = "SystemExit(%r): exiting is not allowed in the REPL; call FINAL(...) to finish" % (exc.code,)
        except KeyboardInterrupt:
            error = "KeyboardInterrupt"
        except Exception:
            error = self._format_exception()
        finally:
            self.stdout.local.buffer = None
            self.stderr.local.buffer = None
        restored = self._restore_protected()
        final = self.final_answer
        answer = self.namespace.get("answer")
        if final is None and isinstance(answer, dict) and answer.get("ready"):
            content = answer.get("content", "")
            final = content if isinstance(content, str) else str(content)
        if not isinstance(answer, dict):
            self.namespace["answer"] = {"content": "", "ready": False}
        return {
            "stdout": out.getvalue(),
            "stderr": err.getvalue(),
            "error": error,
            "final_answer": final,
            "duration": time.perf_counter() - started,
            "timed_out": timed_out,
            "restored": restored,
            "variables": [[n, describe_value(self.namespace[n])] for n in self.user_variables()],
        }

    def _run(self, code: str) -> None:
        """Exec the cell; if its last statement is an expression, print its value like a REPL."""
        tree = ast.parse(code, filename="<repl>", mode="exec")
        last_expr = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last_expr = ast.Expression(tree.body.pop().value)
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
        lines += traceback.format_exception_only(kind, value)  # type: ignore[arg-type]
        return "".join(lines).rstrip()

    def _restore_protected(self) -> List[str]:
        restored = []
        for name, value in self.protected.items():
            if self.namespace.get(name, _MISSING) is not value:
                self.namespace[name] = value
                restored.append(name)
        return restored


_MISSING = object()
