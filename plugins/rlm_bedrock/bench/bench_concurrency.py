"""Do concurrent Bedrock calls overlap? 64 calls that each spend 50 ms inside botocore, through
``BedrockClient.acomplete`` at several concurrency limits; prints medians and the ratio to the ideal
50 ms x ceil(64 / concurrency). No AWS account needed: a before-send hook answers each request.

    python plugins/rlm_bedrock/bench/bench_concurrency.py
"""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import time

from rlm_bedrock.client import BedrockClient
from rlm_bedrock.testing import FakeBedrock

from rlm_core.types import LMRequest, Message

CALLS = 64
LATENCY = 0.050
RUNS = 5
LEVELS = (1, 8, 16, 64)


async def _run_once(client: BedrockClient, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await client.acomplete(LMRequest([Message("user", f"question {i}")], max_tokens=16))

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(CALLS)))
    return time.perf_counter() - started


def _client(latency: float = LATENCY, **kwargs: object) -> BedrockClient:
    client = BedrockClient(
        "us.anthropic.claude-haiku-4-5-20251001-v1:0",
        region_name="us-east-1",
        aws_access_key_id="AKIA" + "BENCH" + "EXAMPLE0",
        aws_secret_access_key="bench" * 8,
        retries={"total_max_attempts": 1},
        **kwargs,  # type: ignore[arg-type]
    )
    FakeBedrock(["ok"], latency=latency).install(client.boto3_client)
    return client


def main() -> None:
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    client = _client()
    asyncio.run(_run_once(client, max(LEVELS)))  # warm-up: service model loading, starting the threads
    print(
        f"{CALLS} calls of {LATENCY * 1000:.0f} ms each through BedrockClient.acomplete, median of {RUNS} runs"
    )
    print(f"{'concurrency':>11}  {'median s':>9}  {'ideal s':>8}  {'ratio':>6}")
    for level in LEVELS:
        times = [asyncio.run(_run_once(client, level)) for _ in range(RUNS)]
        ideal = LATENCY * math.ceil(CALLS / level)
        median = statistics.median(times)
        print(f"{level:>11}  {median:>9.3f}  {ideal:>8.3f}  {median / ideal:>6.2f}")
    client.close()
    # The floor: the same calls with no wait at all, i.e. botocore's own CPU work (serialising, signing,
    # parsing) that the GIL and the cores serialise whatever the concurrency.
    floor = _client(latency=0.0)
    asyncio.run(_run_once(floor, max(LEVELS)))
    cpu = statistics.median(asyncio.run(_run_once(floor, max(LEVELS))) for _ in range(RUNS))
    print(
        f"floor (0 ms calls, concurrency {max(LEVELS)}): median {cpu:.3f} s = {cpu / CALLS * 1000:.2f} ms of "
        f"botocore work per call on {os.cpu_count()} cores"
    )
    floor.close()
    # For contrast: a pool of 10 threads (botocore's default pool size, and about what the loop's
    # default executor gives on a small machine) caps 64 concurrent calls at 10 in flight.
    narrow = _client(max_concurrency=10)
    asyncio.run(_run_once(narrow, max(LEVELS)))
    times = [asyncio.run(_run_once(narrow, 64)) for _ in range(RUNS)]
    print(f"with max_concurrency=10 at concurrency 64: median {statistics.median(times):.3f} s "
          f"(ratio {statistics.median(times) / LATENCY:.2f} to the 64-way ideal)")  # fmt: skip
    narrow.close()


if __name__ == "__main__":
    main()
