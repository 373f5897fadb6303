"""The local environment: namespace, finishing, timeouts, output caps, thread isolation."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from rlm_core.environments.local import LocalEnvironment
from rlm_core.errors import ConfigurationError


async def _host(function: str, args: dict[str, Any]) -> Any:
    if function == "llm_query":
        return f"echo:{args['prompt']}"
    if function == "llm_query_batched":
        return [f"echo:{p}" for p in args["prompts"]]
    raise RuntimeError(f"no {function}")


async def started(**kwargs: Any) -> LocalEnvironment:
    env = LocalEnvironment(**kwargs)
    await env.start(_host, {})
    return env


async def test_context_is_not_copied_and_namespace_persists() -> None:
    env = await started()
    data = {"big": list(range(10))}
    await env.load_context(0, data)
    assert env.runtime.namespace["context"] is data
    await env.execute("total = sum(context['big'])")
    result = await env.execute("print(total)")
    assert result.stdout.strip() == "45"
    assert ("total", "int") in result.variables


async def test_final_answer_three_ways() -> None:
    env = await started()
    assert (await env.execute("FINAL('a')")).final_answer == "a"
    assert (await env.execute("v = 7\nFINAL_VAR('v')")).final_answer == "7"
    assert (await env.execute("answer['content'] = 'c'\nanswer['ready'] = True")).final_answer == "c"
    assert (await env.execute("answer['content'] = 'not yet'")).final_answer is None


async def test_rebinding_scaffold_or_context_is_restored() -> None:
    env = await started()
    await env.load_context(0, "the real context")
    result = await env.execute("context = 'placeholder'\nllm_query = None")
    assert set(result.restored) == {"context", "llm_query"}
    assert (await env.execute("print(context)")).stdout.strip() == "the real context"
    assert (await env.execute("print(llm_query('x'))")).stdout.strip() == "echo:x"


async def test_errors_are_reported_not_raised() -> None:
    env = await started()
    result = await env.execute("1/0")
    assert result.error is not None and "ZeroDivisionError" in result.error
    syntax = await env.execute("def (")
    assert syntax.error is not None and "SyntaxError" in syntax.error
    exited = await env.execute("import sys; sys.exit(3)")
    assert exited.error is not None and "FINAL" in exited.error


async def test_runaway_code_times_out_and_repl_survives() -> None:
    env = await started(timeout=0.3)
    result = await env.execute("x = 1\nwhile True:\n    x += 1")
    assert result.timed_out and result.error is not None and "TimeoutError" in result.error
    assert (await env.execute("print(x > 1)")).stdout.strip() == "True"


async def test_per_call_timeout_overrides_default() -> None:
    env = await started(timeout=None)
    result = await env.execute("while True: pass", timeout=0.2)
    assert result.timed_out


async def test_output_is_capped() -> None:
    env = await started(max_output_chars=1000)
    result = await env.execute("print('x' * 10_000_000)")
    assert len(result.stdout) < 1200
    assert "not kept" in result.stdout


async def test_concurrent_runs_never_see_each_others_stdout() -> None:
    envs = [await started() for _ in range(4)]
    code = "import time\nfor i in range(30):\n    print('{tag}', i)\n    time.sleep(0.001)"
    results = await asyncio.gather(*(env.execute(code.format(tag=f"env{n}")) for n, env in enumerate(envs)))
    for n, result in enumerate(results):
        lines = result.stdout.split()
        assert lines.count(f"env{n}") == 30
        assert not any(tag.startswith("env") and tag != f"env{n}" for tag in lines)
    assert not isinstance(sys.stdout, type(None))


async def test_sub_calls_from_code() -> None:
    env = await started()
    result = await env.execute("print(llm_query_batched(['a', 'b']))")
    assert result.stdout.strip() == "['echo:a', 'echo:b']"


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        LocalEnvironment(timeout=0)
    with pytest.raises(ConfigurationError, match="unknown environment_kwargs"):
        LocalEnvironment(image="x")
