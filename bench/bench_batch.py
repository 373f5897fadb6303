"""Batch throughput against the ideal: 1,000 items, each 2 root turns of 50 ms (a loopback server
with 50 ms latency in its own process), at concurrency 100, locally and on a local Ray cluster.

The ideal is the model time alone: items x turns x latency / concurrency (1.0 s here). A plain
``asyncio.gather`` over ``acompletion`` (same concurrency, no batch layer) is the baseline that shows
what the engine itself costs. Prints items/s, the ratio to ideal and to the baseline, and the extra
wall time per item of the batch layer and of the Ray path, as medians of several runs.
Run: python bench/bench_batch.py [--items N] [--runs N] [--no-ray]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LATENCY = 0.05
TURNS = 2


def _reply(request: dict[str, Any]) -> str:
    turn = sum(1 for m in request["messages"] if m["role"] == "assistant")
    return "```repl\nprint(len(context))\n```" if turn == 0 else "FINAL(done)"


def serve(latency: float) -> None:
    from rlm_core.testing import LoopbackLLMServer

    server = LoopbackLLMServer(_reply, latency=latency).start()
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        server.stop()


def _rlm_kwargs(base_url: str) -> dict[str, Any]:
    connection = {"base_url": base_url, "api_key": "x", "max_retries": 0}
    return {"backend": "openai", "backend_kwargs": {"model_name": "bench", **connection}}


def plain_gather(base_url: str, items: int, concurrency: int) -> float:
    """The loop users write today: acompletion under a semaphore, nothing written, nothing resumable."""
    from rlm_core import RLM

    async def job() -> float:
        slots = asyncio.Semaphore(concurrency)
        async with RLM(**_rlm_kwargs(base_url)) as rlm:

            async def one(n: int) -> bool:
                async with slots:
                    result = await rlm.acompletion(f"document {n}", root_prompt="How long is it?")
                    return result.ok

            started = time.perf_counter()
            finished = await asyncio.gather(*(one(n) for n in range(items)))
            elapsed = time.perf_counter() - started
        assert all(finished)
        return elapsed

    return asyncio.run(job())


def run_once(base_url: str, items: int, concurrency: int, executor: str) -> float:
    from rlm_core import RLM
    from rlm_core.batch import arun_batch

    if executor == "plain":
        return plain_gather(base_url, items, concurrency)
    rlm_kwargs = _rlm_kwargs(base_url)
    job = [{"id": f"b{n}", "context": f"document {n}", "question": "How long is it?"} for n in range(items)]
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        report = asyncio.run(
            arun_batch(
                job,
                Path(folder) / "results.jsonl",
                rlm_factory=RLM,
                rlm_kwargs=rlm_kwargs,
                max_concurrent=concurrency,
                executor=executor,
                keep_results=False,
            )
        )
        elapsed = time.perf_counter() - started
    assert report.summary.ok == items, report.summary.describe()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-ray", action="store_true", help="only the local executor")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(LATENCY)
        return 0
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        ideal = args.items * TURNS * LATENCY / args.concurrency
        print(f"{args.items} items x {TURNS} turns x {LATENCY * 1000:.0f} ms at concurrency {args.concurrency}: "
              f"ideal {ideal:.2f} s; medians of {args.runs} runs")  # fmt: skip
        run_once(base_url, 20, 10, "local")  # warm-up: SDK imports, first connections
        walls: dict[str, float] = {}
        executors = ["plain", "local"] if args.no_ray else ["plain", "local", "ray"]
        for executor in executors:
            if executor == "ray":
                import ray

                ray.init(
                    num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1"
                )
                run_once(base_url, 20, 10, "ray")  # warm-up: worker processes and their imports
            try:
                runs = [run_once(base_url, args.items, args.concurrency, executor) for _ in range(args.runs)]
            finally:
                if executor == "ray":
                    ray.shutdown()
            wall = walls[executor] = statistics.median(runs)
            print(f"{executor:>5}: {wall:6.2f} s  {args.items / wall:7.1f} items/s  ratio to ideal "
                  f"{ideal / wall:.3f}  to plain {walls['plain'] / wall:.2f}  "
                  f"(runs: {', '.join(f'{r:.2f}' for r in runs)})")  # fmt: skip
        for executor in ("local", "ray"):
            if executor in walls:
                extra = (walls[executor] - walls["plain"]) / args.items
                print(
                    f"{executor} batch path: {extra * 1000:+.2f} ms of wall time per item against plain gather"
                )
    finally:
        server.kill()
        server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
