"""Stress the docker environment's start-up path: start, load a dict context, run the first cell.

The hostile test once saw the runtime die on its first cell ("exit code 0", dict context). This runs
that path N times (default 200), a few at a time, against a real Docker-API engine and prints how
many failed and the median start-to-first-result time. Not part of the quick test suite.

    DOCKER_HOST=unix:///run/podman.sock python bench/stress_docker_first_cell.py --runs 200 --image IMAGE
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

from rlm_core.environments.docker_env import LABEL, LABEL_RUN_ID, DockerEnvironment, make_client


async def _host(function: str, args: dict[str, Any]) -> Any:
    if function == "llm_query":
        return "echo:" + str(args.get("prompt"))
    raise RuntimeError(function)


async def one(image: str, index: int, big: bool) -> tuple[bool, float, str]:
    started = time.perf_counter()
    env = DockerEnvironment(image=image, pull=False, timeout=60, kill_grace=2, run_id=f"rlm-stress-{index}")
    context: dict[str, Any] = {"items": list(range(200_000 if big else 50)), "name": f"run {index}"}
    try:
        await env.start(_host, {})
        await env.load_context(0, context)
        result = await env.execute("print(len(context['items']), llm_query('x'))")
        expected = f"{len(context['items'])} echo:x\n"
        ok = result.stdout == expected and result.error is None and env.restarts == 0
        detail = "" if ok else f"stdout={result.stdout!r} error={result.error!r} restarts={env.restarts}"
    except Exception as exc:
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    finally:
        await env.close()
    return ok, time.perf_counter() - started, detail


async def main_async(runs: int, concurrency: int, image: str) -> int:
    slots = asyncio.Semaphore(concurrency)

    async def guarded(index: int) -> tuple[bool, float, str]:
        async with slots:
            return await one(image, index, big=index % 2 == 1)

    results = await asyncio.gather(*(guarded(i) for i in range(runs)))
    failures = [(i, detail) for i, (ok, _, detail) in enumerate(results) if not ok]
    times = [elapsed for _, elapsed, _ in results]
    print(f"runs={runs} failures={len(failures)} median_s={statistics.median(times):.3f}")
    for index, detail in failures[:10]:
        print(f"  run {index}: {detail}")
    leftover = make_client().containers.list(all=True, filters={"label": f"{LABEL}=1"})
    stress_left = [c for c in leftover if c.labels.get(LABEL_RUN_ID, "").startswith("rlm-stress-")]
    print(f"containers_left={len(stress_left)}")
    return 1 if failures or stress_left else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--image", default="rlm-test-python:3.11")
    args = parser.parse_args()
    if not 1 <= args.runs <= 1000 or not 1 <= args.concurrency <= 8:
        parser.error("--runs must be 1..1000 and --concurrency 1..8 (a bounded load)")
    return asyncio.run(main_async(args.runs, args.concurrency, args.image))


if __name__ == "__main__":
    sys.exit(main())
