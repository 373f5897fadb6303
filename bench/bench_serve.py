"""What the HTTP layer of ``rlm serve`` costs per completion: the same scripted completion (a root
turn whose cell asks the sub model, then finishes with its answer; in-process scripted clients, so
no model time) awaited directly with ``RLM.acompletion``, and asked of an ``rlm serve`` app in a
process of its own (uvicorn, Starlette, the key and limits ledger in SQLite, the mapping, JSON or
SSE) through raw httpx, the openai SDK, and the openai SDK streaming.

One request at a time, so each figure is a latency, not a throughput. Prints p50 and p99 of each
path and the overhead over the direct call (p50 and p99 of the HTTP path minus those of the direct
one) as medians of several runs, with the ratios; the target is an overhead under 5 ms at p50.
Run: python bench/bench_serve.py [--requests N] [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

TARGET_MS = 5.0
PATHS = ("httpx", "openai", "openai-stream")
QUESTION = "tag-bench"


def _root(request: Any) -> str:
    return "```repl\nFINAL(llm_query('echo ' + str(context)))\n```"


def _sub(request: Any) -> str:
    return "SUB:" + str(request.messages[-1].content).split("echo ", 1)[-1]


def rlm_kwargs() -> dict[str, Any]:
    """The profile: scripted root and sub clients (the engine's own, no network), local REPL."""
    from rlm_core.testing import ScriptedClient

    return {
        "backend": ScriptedClient(_root, model_name="root"),
        "other_backends": [ScriptedClient(_sub, model_name="sub")],
    }


def serve(limits_db: str) -> None:
    """The server process: the real service and uvicorn server ``rlm serve`` runs, on 127.0.0.1."""
    from rlm_core.serve.app import build_service
    from rlm_core.serve.config import Profile, ServeConfig, ServerSettings
    from rlm_core.serve.keys import KeyRing
    from rlm_core.serve.server import serve as run_server

    config = ServeConfig(
        ServerSettings(port=0, limits_db=limits_db, grace_seconds=1.0),
        {"bench": Profile("bench", rlm_kwargs())},
    )
    service = build_service(config, KeyRing([]))
    run_server(service, "127.0.0.1", 0, ready=lambda port: print(port, flush=True))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def direct(requests: int) -> list[float]:
    from rlm_core import RLM

    async with RLM(**rlm_kwargs()) as rlm:
        for _ in range(10):  # warm-up
            await rlm.acompletion(QUESTION)
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            result = await rlm.acompletion(QUESTION)
            times.append(time.perf_counter() - started)
            assert result.response == f"SUB:{QUESTION}", result.error
    return times


async def over_http(path: str, base_url: str, requests: int) -> list[float]:
    import httpx
    import openai

    messages: list[Any] = [{"role": "user", "content": QUESTION}]
    body = {"model": "bench", "messages": messages}
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=30) as http,
        openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0) as client,
    ):

        async def once() -> str:
            if path == "httpx":
                response = await http.post("/chat/completions", json=body)
                response.raise_for_status()
                return str(response.json()["choices"][0]["message"]["content"])
            if path == "openai":
                reply = await client.chat.completions.create(model="bench", messages=messages)
                return reply.choices[0].message.content or ""
            stream = await client.chat.completions.create(
                model="bench",
                messages=messages,
                stream=True,
            )
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

        for _ in range(10):  # warm-up: connections, the server's first requests
            await once()
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            text = await once()
            times.append(time.perf_counter() - started)
            assert text == f"SUB:{QUESTION}", text
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200, help="requests per path and run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--serve", metavar="LIMITS_DB", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    with tempfile.TemporaryDirectory() as scratch:
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(Path(scratch) / "limits.sqlite3")],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert server.stdout is not None
            base_url = f"http://127.0.0.1:{int(server.stdout.readline())}/v1"
            # uvicorn's access log goes to stdout after the port: keep reading it, or a full pipe
            # would stall the server.
            threading.Thread(target=server.stdout.read, daemon=True).start()
            p50: dict[str, list[float]] = {name: [] for name in ("direct", *PATHS)}
            p99: dict[str, list[float]] = {name: [] for name in ("direct", *PATHS)}
            for _ in range(args.runs):  # interleaved, so a busy moment of the machine hits every path
                for name in ("direct", *PATHS):
                    if name == "direct":
                        times = asyncio.run(direct(args.requests))
                    else:
                        times = asyncio.run(over_http(name, base_url, args.requests))
                    p50[name].append(percentile(times, 0.50) * 1e3)
                    p99[name].append(percentile(times, 0.99) * 1e3)
        finally:
            server.terminate()  # SIGTERM: the server's own graceful stop
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()

    med50 = {name: statistics.median(values) for name, values in p50.items()}
    med99 = {name: statistics.median(values) for name, values in p99.items()}
    print(
        f"rlm serve HTTP overhead: {args.requests} sequential completions per path, medians of {args.runs} runs "
        "(2 scripted model calls and one REPL cell each)"
    )
    print(f"{'path':<14} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8} {'x p50':>6} {'x p99':>6}")
    print(f"{'direct':<14} {med50['direct']:>8.2f} {med99['direct']:>8.2f}")
    for name in PATHS:
        over50, over99 = med50[name] - med50["direct"], med99[name] - med99["direct"]
        print(
            f"{name:<14} {med50[name]:>8.2f} {med99[name]:>8.2f} {over50:>+8.2f} {over99:>+8.2f} "
            f"{med50[name] / med50['direct']:>6.2f} {med99[name] / med99['direct']:>6.2f}"
        )
    worst = max(med50[name] - med50["direct"] for name in PATHS)
    verdict = "within" if worst < TARGET_MS else "OVER"
    print(f"largest p50 overhead: {worst:.2f} ms ({verdict} the {TARGET_MS:g} ms target)")


if __name__ == "__main__":
    main()
