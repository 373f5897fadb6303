"""Sandbox benchmarks: start to first result, per-cell round trip, sub-call overhead, 100 MB context upload,
and the memory a large context costs the host and the sandbox.

Run: ``DOCKER_HOST=... python bench/bench_sandbox.py [--runs 5] [--env subprocess docker]``. Prints medians.
Targets: round trip < 20 ms, sub-call overhead < 5 ms, 100 MB context < 2 s; a large context costs
the host < 0.1x its size in peak memory growth and the sandbox's runtime process < 1.2x.
``--context-mb 1024`` sets the large context's size (``--docker-context-mb`` for docker: its
container needs memory for the whole context plus the page cache of the file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
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


# -- memory of a large context: one fresh process per measurement, so peaks start clean ----------

RUNTIME_MEMORY = (
    "import json\n"
    "status = dict(line.split(':', 1) for line in open('/proc/self/status'))\n"
    "print(json.dumps({k: int(status[k].split()[0]) * 1024 for k in ('VmRSS', 'VmHWM')}))"
)


def _large_context(kind: str, size: int) -> object:
    if kind == "text":
        return "x" * size
    if kind == "text-non-ascii":  # 2-byte characters: the str stores 2 bytes each, UTF-8 takes 3
        return "\u4e2d" * (size // 2)
    return [f"line {i:08d} " + "y" * 79 for i in range(size // 100)]  # about 100 bytes per item


async def _measure_context(name: str, image: str, kind: str, size: int) -> dict[str, float]:
    """Host and sandbox peak memory while one context of ``size`` bytes (in the host's str) loads."""
    if name == "subprocess":
        make = _factory(name, image)
    else:
        from rlm_core.environments.docker_env import DockerEnvironment

        mem_limit = max(2 * size + (512 << 20), 1 << 30)  # the context, its file's page cache, Python

        def make() -> SandboxEnvironment:
            return DockerEnvironment(image=image, pull=False, timeout=600, mem_limit=mem_limit)

    context = _large_context(kind, size)
    env = make()
    await env.start(_host, {})
    try:
        before = json.loads((await env.execute(RUNTIME_MEMORY)).stdout)
        host_before = _rss_bytes("VmRSS")
        if not _reset_peak():
            raise SystemExit("cannot reset the peak RSS (/proc/self/clear_refs); no host measurement here")
        began = time.perf_counter()
        await env.load_context(0, context)
        elapsed = time.perf_counter() - began
        host_peak = _rss_bytes("VmHWM")
        after = json.loads((await env.execute(RUNTIME_MEMORY)).stdout)
        check = await env.execute("len(context)")
        assert check.stdout.strip() == str(len(context)), check  # type: ignore[arg-type]
    finally:
        await env.close()
    return {
        "load_s": elapsed,
        "host_growth_x": (host_peak - host_before) / size,
        "sandbox_growth_x": (after["VmHWM"] - before["VmRSS"]) / size,
        "sandbox_peak_x": after["VmHWM"] / size,
        # What the loaded value itself occupies: the floor for the sandbox's growth.
        "sandbox_settled_x": (after["VmRSS"] - before["VmRSS"]) / size,
    }


def _context_memory(name: str, image: str, kind: str, size: int, runs: int) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, __file__, "--measure-context", name, kind, str(size), "--image", image],
            capture_output=True,
            text=True,
            check=True,
        )
        samples.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {key: statistics.median(s[key] for s in samples) for key in samples[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--env", nargs="+", default=None, help="subprocess and/or docker")
    parser.add_argument("--image", default=os.environ.get("RLM_TEST_IMAGE", "python:3.11-slim"))
    parser.add_argument("--context-mb", type=int, default=1024, help="large context size; 0 skips")
    parser.add_argument("--docker-context-mb", type=int, default=1024)
    parser.add_argument("--context-runs", type=int, default=3)
    parser.add_argument("--context-kinds", nargs="+", default=["text", "text-non-ascii", "list"])
    parser.add_argument("--skip-latency", action="store_true", help="only the large-context memory")
    parser.add_argument(
        "--measure-context", nargs=3, metavar=("ENV", "KIND", "BYTES"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.measure_context:
        name, kind, size = args.measure_context
        print(json.dumps(asyncio.run(_measure_context(name, args.image, kind, int(size)))))
        return
    names = args.env or (["subprocess", "docker"] if os.environ.get("DOCKER_HOST") else ["subprocess"])
    for name in names:
        if not args.skip_latency:
            report = asyncio.run(bench(name, _factory(name, args.image), args.runs))
            print(f"{name} (median of {args.runs} runs; context: median of {min(args.runs, 3)})")
            for key, value in report.items():
                print(f"  {key:36s} {value:10.3f}")
        megabytes = args.docker_context_mb if name == "docker" else args.context_mb
        if not megabytes:
            continue
        for kind in args.context_kinds:
            figures = _context_memory(name, args.image, kind, megabytes << 20, args.context_runs)
            print(
                f"{name}: {megabytes} MB {kind} context (median of {args.context_runs} fresh processes): "
                f"load {figures['load_s']:.2f} s; host peak growth {figures['host_growth_x']:.3f}x "
                f"(target < 0.1x); sandbox peak growth {figures['sandbox_growth_x']:.3f}x "
                f"(target < 1.2x; the loaded value itself: {figures['sandbox_settled_x']:.3f}x), "
                f"sandbox peak RSS {figures['sandbox_peak_x']:.3f}x"
            )


if __name__ == "__main__":
    main()
