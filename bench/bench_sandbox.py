"""Sandbox benchmarks: start to first result, per-cell round trip, sub-call overhead, 100 MB context upload.

Run: ``DOCKER_HOST=... python bench/bench_sandbox.py [--runs 5] [--env subprocess docker]``. Prints medians.
Targets (issue 3): round trip < 20 ms, sub-call overhead < 5 ms, 100 MB context < 2 s with peak host
memory growth < 2x the context.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from rlm_core.environments.sandbox import SandboxEnvironment

MODEL_LATENCY = 0.010  # a simulated model call: the overhead is what the sandbox adds on top


async def _host(function: str, args: dict[str, Any]) -> Any:
    await asyncio.sleep(MODEL_LATENCY)
    if function == "llm_query_batched":
        return ["ok"] * len(args["prompts"])
    return "ok"


def _factory(name: str, image: str) -> Callable[[], SandboxEnvironment]:
    if name == "subprocess":
        from rlm_core.environments.subprocess_env import SubprocessEnvironment

        return lambda: SubprocessEnvironment(timeout=120)
    from rlm_core.environments.docker_env import DockerEnvironment

    return lambda: DockerEnvironment(image=image, pull=False, timeout=120)


def _rss_bytes(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM (peak RSS) to the current RSS
        return True
    except OSError:
        return False


async def bench(name: str, make: Callable[[], SandboxEnvironment], runs: int) -> dict[str, float]:
    starts, trips, overheads, uploads, ratios = [], [], [], [], []
    for _ in range(runs):
        began = time.perf_counter()
        env = make()
        await env.start(_host, {})
        await env.execute("1")
        starts.append(time.perf_counter() - began)
        try:
            await env.execute("x = 0")
            for _ in range(50):
                began = time.perf_counter()
                await env.execute("x += 1")
                trips.append(time.perf_counter() - began)
            result = await env.execute(
                "import time\n"
                "laps = []\n"
                "for _ in range(20):\n"
                "    t = time.perf_counter(); llm_query('p'); laps.append(time.perf_counter() - t)\n"
                "sorted(laps)[len(laps) // 2]"
            )
            overheads.append(float(result.stdout) - MODEL_LATENCY)
        finally:
            await env.close()

    context = "x" * (100 * 1024 * 1024)
    for index in range(min(runs, 3)):
        env = make()
        await env.start(_host, {})
        try:
            baseline = _rss_bytes("VmRSS")
            can_measure = _reset_peak()
            began = time.perf_counter()
            await env.load_context(index, context)
            uploads.append(time.perf_counter() - began)
            if can_measure:
                ratios.append((_rss_bytes("VmHWM") - baseline) / len(context))
            check = await env.execute("len(context)")
            assert check.stdout.strip() == str(len(context)), check
        finally:
            await env.close()
    report = {
        "start_to_first_result_s": statistics.median(starts),
        "cell_round_trip_ms": statistics.median(trips) * 1000,
        "sub_call_overhead_ms": statistics.median(overheads) * 1000,
        "context_100mb_upload_s": statistics.median(uploads),
    }
    if ratios:
        report["context_peak_host_memory_growth_x"] = statistics.median(ratios)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--env", nargs="+", default=None, help="subprocess and/or docker")
    parser.add_argument("--image", default=os.environ.get("RLM_TEST_IMAGE", "python:3.11-slim"))
    args = parser.parse_args()
    names = args.env or (["subprocess", "docker"] if os.environ.get("DOCKER_HOST") else ["subprocess"])
    for name in names:
        report = asyncio.run(bench(name, _factory(name, args.image), args.runs))
        print(f"{name} (median of {args.runs} runs; context: median of {min(args.runs, 3)})")
        for key, value in report.items():
            print(f"  {key:36s} {value:10.3f}")


if __name__ == "__main__":
    main()
