"""Engine overhead benchmarks: import time, fixed cost of a completion, per-iteration cost,
256 concurrent sub-calls and a 2,048-call fan-out at concurrency 128 against a loopback
OpenAI-compatible server in its own process.

Prints medians of several runs and ratios to the targets. Run: python bench/bench_engine.py
"""

from __future__ import annotations

import ast
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from rlm_core import RLM
from rlm_core.testing import ScriptedClient
from rlm_core.types import LMRequest

REPEATS = 7


def median_of(fn: Callable[[], float], repeats: int = REPEATS) -> float:
    return statistics.median(fn() for _ in range(repeats))


def import_time() -> float:
    code = "import time; t = time.perf_counter(); import rlm_core; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout)


def fixed_cost() -> float:
    """completion() wall time with a model that answers instantly: all of it is engine time."""
    rlm = RLM(backend=ScriptedClient(lambda r: "```repl\nFINAL('done')\n```"))
    rlm.completion("warm-up")
    runs = []
    for _ in range(30):
        started = time.perf_counter()
        rlm.completion("a short context")
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def per_iteration(turns: int = 30) -> float:
    def script(request: LMRequest) -> str:
        count = sum(1 for m in request.messages if m.role == "assistant")
        return "```repl\nFINAL('done')\n```" if count >= turns - 1 else f"```repl\nprint({count})\n```"

    rlm = RLM(backend=ScriptedClient(script), max_iterations=turns + 5)
    started = time.perf_counter()
    result = rlm.completion("context")
    elapsed = time.perf_counter() - started
    assert result.iterations == turns, result.iterations
    return elapsed / turns


def start_server(latency: float, reply: str | None = None) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",  # not -m: the package imports the module first, and runpy warns about that
            "import sys; from rlm_core.testing.servers import main; sys.exit(main(sys.argv[1:]))",
            "--port",
            "0",
            "--latency",
            str(latency),
            *(["--reply", reply] if reply is not None else []),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def batched_subcalls(base_url: str, calls: int = 256, concurrency: int = 16) -> float:
    code = f"out = llm_query_batched(['q%d' % i for i in range({calls})])\nFINAL(str(len(out)))"
    rlm = RLM(
        backend=ScriptedClient([f"```repl\n{code}\n```"] * 100),
        other_backends=["openai"],
        other_backend_kwargs=[{"model_name": "loopback", "base_url": base_url, "api_key": "bench"}],
        max_concurrent_subcalls=concurrency,
    )
    rlm.completion("warm-up")
    started = time.perf_counter()
    result = rlm.completion("context")
    elapsed = time.perf_counter() - started
    assert result.response == str(calls), result
    rlm.close()
    return elapsed


def fan_out(base_url: str, calls: int = 2048, concurrency: int = 128) -> tuple[float, int, str]:
    """Many sub-calls at high concurrency: seconds, how many slots failed, and the first failure."""
    code = (
        f"out = llm_query_batched(['q%d' % i for i in range({calls})])\n"
        "errors = [o for o in out if o.startswith('Error')]\n"
        "FINAL(repr((len(out), len(errors), errors[0][:300] if errors else '')))"
    )
    rlm = RLM(
        backend=ScriptedClient([f"```repl\n{code}\n```"] * 100),
        other_backends=["openai"],
        other_backend_kwargs=[{"model_name": "loopback", "base_url": base_url, "api_key": "bench"}],
        max_concurrent_subcalls=concurrency,
    )
    started = time.perf_counter()
    result = rlm.completion("context")
    elapsed = time.perf_counter() - started
    rlm.close()
    if result.response is None:
        raise SystemExit(f"the fan-out run gave no answer: {result}")
    count, failed, first = ast.literal_eval(result.response)
    assert count == calls, result.response
    return elapsed, failed, first


def in_process_subcalls(calls: int = 256, concurrency: int = 16) -> float:
    """The engine alone: sub-calls to an in-process model that just sleeps 50 ms (no HTTP, no SDK)."""
    code = f"out = llm_query_batched(['q%d' % i for i in range({calls})])\nFINAL(str(len(out)))"
    rlm = RLM(
        backend=ScriptedClient([f"```repl\n{code}\n```"] * 100),
        other_backends=[ScriptedClient(["ok"], model_name="sleeper", latency=0.05)],
        max_concurrent_subcalls=concurrency,
    )
    started = time.perf_counter()
    result = rlm.completion("context")
    elapsed = time.perf_counter() - started
    assert result.response == str(calls), result
    return elapsed


def direct_subcalls(base_url: str, calls: int = 256, concurrency: int = 16) -> float:
    """The same calls straight through the client, no engine: the floor the SDK and server allow."""
    import asyncio

    from rlm_core.clients.openai_client import OpenAIClient
    from rlm_core.types import LMRequest, Message

    async def run() -> float:
        client = OpenAIClient(model_name="loopback", base_url=base_url, api_key="bench")
        slots = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with slots:
                await client.acomplete(LMRequest([Message("user", f"q{i}")], depth=1, max_tokens=8192))

        await asyncio.gather(*(one(i) for i in range(concurrency)))
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(calls)))
        elapsed = time.perf_counter() - started
        await client.aclose()
        return elapsed

    return asyncio.run(run())


def main() -> None:
    imp = median_of(import_time)
    print(f"import rlm_core: median {imp * 1000:.1f} ms (target < 60 ms: {imp / 0.060:.2f}x of target)")
    fixed = fixed_cost()
    print(
        f"fixed cost of one completion(): median {fixed * 1000:.2f} ms (target < 20 ms: {fixed / 0.020:.2f}x)"
    )
    per_turn = median_of(per_iteration, 5)
    print(
        f"per-iteration overhead over 30 turns: median {per_turn * 1000:.2f} ms "
        f"(target < 2 ms: {per_turn / 0.002:.2f}x)"
    )
    proc, base_url = start_server(latency=0.05)
    try:
        runs = [batched_subcalls(base_url) for _ in range(5)]
        direct = statistics.median(direct_subcalls(base_url) for _ in range(5))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    proc, base_url = start_server(latency=0.1, reply="ok")
    try:
        fan_outs = [fan_out(base_url) for _ in range(3)]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    batch = statistics.median(runs)
    ideal = 256 / 16 * 0.05
    print(
        f"256 sub-calls of 50 ms at concurrency 16: median {batch:.3f} s over {len(runs)} runs "
        f"(ideal {ideal:.2f} s: {batch / ideal:.3f}x; target within 1.10x)"
    )
    print(
        f"  same calls straight through the client, no engine: median {direct:.3f} s "
        f"(engine / direct = {batch / direct:.3f}x)"
    )
    fan_time = statistics.median(t for t, _, _ in fan_outs)
    fan_failed = statistics.median(f for _, f, _ in fan_outs)
    fan_ideal = 2048 / 128 * 0.1
    print(
        f"2048 sub-calls of 100 ms at concurrency 128: median {fan_time:.3f} s over {len(fan_outs)} runs "
        f"(ideal {fan_ideal:.2f} s: {fan_time / fan_ideal:.3f}x; target within 1.25x); "
        f"failed slots: median {fan_failed:g} of 2048 (target 0)"
    )
    first_failure = next((first for _, failed, first in fan_outs if failed), "")
    if first_failure:
        print(f"  first failure: {first_failure}")
    alone = median_of(in_process_subcalls, 5)
    print(
        f"  the engine alone (in-process 50 ms model, no HTTP): median {alone:.3f} s ({alone / ideal:.3f}x of ideal)"
    )


if __name__ == "__main__":
    main()
