"""Where the engine's CPU goes per model call: a sub-call, and a root turn as the history grows.

Profiles with cProfile (the standard library's deterministic profiler) against a loopback
OpenAI-compatible server in its own process, so only the engine and SDK side is measured. Prints
CPU milliseconds per call and the functions that cost the most.

Run: ``python bench/profile_engine.py [--turns 40] [--output-chars 4000] [--top 18]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import subprocess
import sys
import time
from typing import Any

SUB_CALLS, SUB_CONCURRENCY = 512, 16


def _reply(body: dict[str, Any]) -> str:
    """Root model ``grow-<turns>-<chars>``: prints ``chars`` characters per turn, then answers."""
    model = str(body.get("model"))
    if not model.startswith("grow-"):
        return "ok"
    _, turns, chars = model.split("-")
    done = sum(1 for m in body.get("messages") or [] if m.get("role") == "assistant")
    if done >= int(turns) - 1:
        return "```repl\nFINAL('done')\n```"
    return f"```repl\nprint('{done} ' + 'x' * {int(chars)})\n```"


def serve() -> None:
    from rlm_core.testing.servers import LoopbackLLMServer

    server = LoopbackLLMServer(_reply).start()
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        server.stop()


# Suspected hot spots, by function name: the SDK's request transform, its response parsing, HTTP.
HOT_SPOTS = {
    "async_maybe_transform": "the OpenAI SDK's request transform (params -> TypedDict walk)",
    "_process_response": "the SDK's response parsing into pydantic models",
    "handle_async_request": "the HTTP transport (httpx/httpcore)",
}


def _top(profile: cProfile.Profile, top: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    total = sum(entry[2] for entry in stats.stats.values())  # type: ignore[attr-defined]
    shares = []
    for name, what in HOT_SPOTS.items():
        cumulative = max((e[3] for (_, _, fn), e in stats.stats.items() if fn == name), default=0.0)  # type: ignore[attr-defined]
        shares.append(f"  {cumulative / total:6.1%} of profiled CPU in {what} ({name})")
    stats.sort_stats("tottime").print_stats(top)
    lines = out.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    return "\n".join(shares + lines[start:])


def _cpu_of(complete: Any, top: int) -> tuple[float, str]:
    """CPU seconds of one unprofiled run, then the profile of a second run."""
    cpu = time.process_time()
    complete()
    cpu = time.process_time() - cpu
    profile = cProfile.Profile()
    profile.enable()
    complete()
    profile.disable()
    return cpu, _top(profile, top)


def profile_subcalls(base_url: str, top: int) -> None:
    from rlm_core import RLM
    from rlm_core.testing import ScriptedClient

    code = f"out = llm_query_batched(['q%d' % i for i in range({SUB_CALLS})])\nFINAL(str(len(out)))"
    rlm = RLM(
        backend=ScriptedClient([f"```repl\n{code}\n```"] * 100),
        other_backends=["openai"],
        other_backend_kwargs=[{"model_name": "sub", "base_url": base_url, "api_key": "bench"}],
        max_concurrent_subcalls=SUB_CONCURRENCY,
    )
    rlm.completion("warm-up")

    def complete() -> None:
        result = rlm.completion("context")
        assert result.response == str(SUB_CALLS), result

    cpu, report = _cpu_of(complete, top)
    rlm.close()
    print(f"sub-calls: {cpu / SUB_CALLS * 1000:.3f} ms CPU per sub-call ({SUB_CALLS} at concurrency 16)")
    print(report)


def profile_root_turns(base_url: str, turns: int, output_chars: int, top: int) -> None:
    from rlm_core import RLM
    from rlm_core.clients.openai_client import OpenAIClient

    per_call: list[tuple[int, float]] = []  # (history characters, CPU seconds) per root call
    original = OpenAIClient._acall

    async def timed(self: Any, client: Any, request: Any) -> Any:
        started = time.process_time()
        try:
            return await original(self, client, request)
        finally:  # root turns run one at a time, so process CPU is this call's
            per_call.append((sum(len(m.content) for m in request.messages), time.process_time() - started))

    root = {"model_name": f"grow-{turns}-{output_chars}", "base_url": base_url, "api_key": "bench"}
    rlm = RLM(backend="openai", backend_kwargs=root, max_iterations=turns + 5)

    def complete() -> None:
        result = rlm.completion("context")
        assert result.response == "done", result

    OpenAIClient._acall = timed  # type: ignore[method-assign]
    try:
        cpu, report = _cpu_of(complete, top)
    finally:
        OpenAIClient._acall = original  # type: ignore[method-assign]
    print(
        f"\nroot turns: {turns} turns printing {output_chars} characters each: {cpu / turns * 1000:.2f} ms CPU "
        "per turn on average (the whole run, unprofiled)"
    )
    unprofiled = per_call[:turns]
    for index in sorted({0, turns // 4, turns // 2, turns - 1}):
        chars, seconds = unprofiled[index]
        print(
            f"  model call {index + 1:3d}: history {chars:8d} chars, {seconds * 1000:6.2f} ms CPU in the client"
        )
    print(report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--output-chars", type=int, default=4000, help="printed per turn: grows the history")
    parser.add_argument("--top", type=int, default=18)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    base_url = proc.stdout.readline().strip()
    try:
        profile_subcalls(base_url, args.top)
        profile_root_turns(base_url, args.turns, args.output_chars, args.top)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
