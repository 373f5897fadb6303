"""A contract test suite for environments: subclass it in a plugin's tests to run every test against it.

Usage::

    from rlm_core.testing.environment_contract import EnvironmentContract

    class TestMySandbox(EnvironmentContract):
        def make_environment(self):
            return MySandboxEnvironment(timeout=30)

The tests are plain synchronous pytest methods (each runs its own event loop), so they work with
or without pytest-asyncio.
"""

from __future__ import annotations

import abc
import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

from rlm_core.environments.base import Environment, ExecResult
from rlm_core.errors import BudgetExceededError

FAILING_PROMPT = "please fail"


class RecordingHost:
    """A scripted ``host`` callable: answers sub-calls predictably and records each one."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, function: str, args: dict[str, Any]) -> Any:
        self.calls.append((function, args))
        if function in ("llm_query", "rlm_query"):
            if args.get("prompt") == FAILING_PROMPT:
                raise BudgetExceededError("sub", 100, 100, 10)
            return f"{function}:{args.get('prompt')}:{args.get('model')}"
        if function in ("llm_query_batched", "rlm_query_batched"):
            single = function.replace("_batched", "")
            return [f"{single}:{p}:{args.get('model')}" for p in args.get("prompts", [])]
        raise ValueError(f"unexpected host function {function!r}")


def run_cells(environment: Environment, *cells: str, contexts: Sequence[Any] = ()) -> list[str]:
    """Start ``environment`` with a :class:`RecordingHost`, load ``contexts``, run ``cells`` and return
    their stdout; a cell that fails fails the caller. The environment is closed on every path."""

    async def scenario() -> list[str]:
        try:
            await environment.start(RecordingHost(), {})
            for index, context in enumerate(contexts):
                await environment.load_context(index, context)
            outputs = []
            for cell in cells:
                result = await environment.execute(cell)
                assert result.error is None, f"the cell failed: {result.error}"
                outputs.append(result.stdout)
            return outputs
        finally:
            await environment.close()

    return asyncio.run(scenario())


def _shout(text: str, times: int = 1) -> str:
    return (text.upper() + "!") * times


def _add(a: int, b: int) -> int:
    return a + b


class EnvironmentContract(abc.ABC):
    """The behaviour every rlm-core environment shares. Override :meth:`make_environment`.

    ``timeout_seconds`` is the per-cell limit the timeout test uses; raise it for slow sandboxes.
    """

    timeout_seconds: ClassVar[float] = 1.0
    tools: ClassVar[dict[str, Any]] = {"shout": _shout, "add": _add, "settings": {"depth": 2}}

    @abc.abstractmethod
    def make_environment(self) -> Environment:
        """A fresh, unstarted environment."""

    # -- helpers -------------------------------------------------------------------------------

    def run(self, scenario: Callable[[Environment, RecordingHost], Awaitable[None]]) -> RecordingHost:
        """Start a fresh environment, run ``scenario(env, host)``, and always close it."""
        host = RecordingHost()

        async def main() -> None:
            env = self.make_environment()
            try:
                await env.start(host, dict(self.tools))
                await scenario(env, host)
            finally:
                await env.close()

        asyncio.run(main())
        return host

    @staticmethod
    def ok(result: ExecResult) -> ExecResult:
        assert result.error is None, f"the cell failed: {result.error}\nstderr: {result.stderr}"
        return result

    # -- the contract --------------------------------------------------------------------------

    def test_it_is_an_environment(self) -> None:
        assert isinstance(self.make_environment(), Environment)

    def test_prints_echoes_and_keeps_state(self) -> None:
        async def scenario(env: Environment, host: RecordingHost) -> None:
            first = self.ok(await env.execute("x = 40\nprint('hello')\nx + 2"))
            assert first.stdout == "hello\n42\n"
            second = self.ok(await env.execute("y = x * 2\ny"))
            assert second.stdout == "80\n"
            assert ("y", "int") in second.variables and ("x", "int") in second.variables
            assert not second.state_lost

        self.run(scenario)

    def test_errors_are_reported_not_raised(self) -> None:
        async def scenario(env: Environment, host: RecordingHost) -> None:
            failed = await env.execute("print('before')\n1 / 0")
            assert failed.error is not None and "ZeroDivisionError" in failed.error
            assert failed.stdout == "before\n"
            syntax = await env.execute("def broken(:")
            assert syntax.error is not None and "SyntaxError" in syntax.error
            exiting = await env.execute("import sys\nsys.exit(3)")
            assert exiting.error is not None and "SystemExit" in exiting.error
            assert self.ok(await env.execute("'still alive'")).stdout == "still alive\n"

        self.run(scenario)

    def test_contexts_and_history(self) -> None:
        async def scenario(env: Environment, host: RecordingHost) -> None:
            await env.load_context(0, "first context")
            await env.load_context(1, ["a", {"b": [1, 2]}])
            await env.load_context(2, {"k": "v", "n": 3})
            await env.load_history(0, [{"role": "user", "content": "hi"}])
            result = self.ok(
                await env.execute(
                    "import json\n"
                    "print(context_0)\n"
                    "print(json.dumps(context_1))\n"
                    "print(json.dumps(context, sort_keys=True))\n"
                    "print(history_0[0]['content'])"
                )
            )
            assert result.stdout.splitlines() == [
                "first context",
                json.dumps(["a", {"b": [1, 2]}]),
                json.dumps({"k": "v", "n": 3}, sort_keys=True),
                "hi",
            ]
            rebound = await env.execute("context = 'overwritten'\nprint(context_0)")
            assert "context" in rebound.restored
            assert self.ok(await env.execute("context['k']")).stdout == "v\n"

        self.run(scenario)

    def test_sub_calls_reach_the_host(self) -> None:
        async def scenario(env: Environment, host: RecordingHost) -> None:
            result = self.ok(
                await env.execute(
                    "print(llm_query('one'))\n"
                    "print(llm_query('two', model='m2'))\n"
                    "print(llm_query_batched(['a', 'b', 'c']))\n"
                    "print(rlm_query('deep'))\n"
                    "print(rlm_query_batched(['x', 'y']))"
                )
            )
            assert result.stdout.splitlines() == [
                "llm_query:one:None",
                "llm_query:two:m2",
                "['llm_query:a:None', 'llm_query:b:None', 'llm_query:c:None']",
                "rlm_query:deep:None",
                "['rlm_query:x:None', 'rlm_query:y:None']",
            ]
            functions = [name for name, _ in host.calls]
            # A batch is one host call: the host decides how to fan it out.
            assert functions == [
                "llm_query",
                "llm_query",
                "llm_query_batched",
                "rlm_query",
                "rlm_query_batched",
            ]
            assert host.calls[2][1]["prompts"] == ["a", "b", "c"]

        self.run(scenario)

    def test_concurrent_sub_calls_from_threads(self) -> None:
        async def scenario(env: Environment, host: RecordingHost) -> None:
            result = self.ok(
                await env.execute(
                    "from concurrent.futures import ThreadPoolExecutor\n"
                    "with ThreadPoolExecutor(8) as pool:\n"
                    "    replies = list(pool.map(llm_query, [str(i) for i in range(16)]))\n"
                    "print(replies == ['llm_query:%d:None' % i for i in range(16)])"
                )
            )
            assert result.stdout == "True\n"
            assert sorted(args["prompt"] for _, args in host.calls) == sorted(str(i) for i in range(16))

        self.run(scenario)

    def test_host_errors_surface_inside_the_cell(self) -> None:
        async def scenario(env: Environment, host: RecordingHost) -> None:
            caught = self.ok(
                await env.execute(
                    "try:\n"
                    f"    llm_query({FAILING_PROMPT!r})\n"
                    "except Exception as exc:\n"
                    "    print(type(exc).__name__, 'budget exhausted' in str(exc))"
                )
            )
            assert caught.stdout.split()[1] == "True"
            uncaught = await env.execute(f"llm_query({FAILING_PROMPT!r})")
            assert uncaught.error is not None and "max_sub_tokens" in uncaught.error

        self.run(scenario)

    def test_final_answers(self) -> None:
        async def scenario(env: Environment, host: RecordingHost) -> None:
            assert self.ok(await env.execute("FINAL('done')")).final_answer == "done"
            assert self.ok(await env.execute("print('no answer yet')")).final_answer is None
            assert (
                self.ok(await env.execute("result = 'from var'\nFINAL_VAR('result')")).final_answer
                == "from var"
            )
            assert self.ok(await env.execute("FINAL(42)")).final_answer == "42"
            answered = self.ok(await env.execute("answer['content'] = 'dict way'\nanswer['ready'] = True"))
            assert answered.final_answer == "dict way"
            missing = await env.execute("FINAL_VAR('nope')")
            assert missing.error is not None and "nope" in missing.error

        self.run(scenario)

    def test_custom_tools(self) -> None:
        async def scenario(env: Environment, host: RecordingHost) -> None:
            result = self.ok(
                await env.execute(
                    "print(shout('hey', times=2))\nprint(add(2, b=3))\nprint(settings['depth'])"
                )
            )
            assert result.stdout.splitlines() == ["HEY!HEY!", "5", "2"]
            restored = await env.execute("llm_query = None\nshout = None")
            assert {"llm_query", "shout"} <= set(restored.restored)
            assert self.ok(await env.execute("shout('x')")).stdout == "X!\n"

        self.run(scenario)

    def test_timeout_interrupts_and_the_environment_survives(self) -> None:
        async def scenario(env: Environment, host: RecordingHost) -> None:
            self.ok(await env.execute("kept = 'value'"))
            looped = await env.execute("while True:\n    pass", timeout=self.timeout_seconds)
            assert looped.timed_out
            assert looped.error is not None and "TimeoutError" in looped.error
            after = self.ok(await env.execute("'alive'"))
            assert after.stdout == "alive\n"

        self.run(scenario)

    def test_huge_output_is_capped(self) -> None:
        async def scenario(env: Environment, host: RecordingHost) -> None:
            result = self.ok(await env.execute("for _ in range(50):\n    print('x' * 100_000)"))
            assert len(result.stdout) < 1_000_000
            assert "more characters of output were not kept" in result.stdout

        self.run(scenario)

    def test_close_is_idempotent(self) -> None:
        async def scenario(env: Environment, host: RecordingHost) -> None:
            self.ok(await env.execute("1"))
            await env.close()

        self.run(scenario)  # run() closes a second time
