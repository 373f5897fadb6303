"""The openai client's two transports side by side: the lean HTTP path ("http") and the SDK ("sdk").

1. A fresh process: ``rlm run FILE -q ... --backend openai`` against a loopback server in its own
   process (one completion whose root model answers at once), wall time, medians of 5 per
   transport, the two runs interleaved so that a busy machine slows both alike.
2. Client CPU per sub-call: 2,048 sub-calls at concurrency 128 through the engine against the same
   kind of server, replying at once; this process's CPU time (engine + client, the server is
   another process) divided by the calls, medians of 3 per transport, interleaved.

Prints figures and their ratios; asserts nothing. Run: python bench/bench_cold_start.py
"""

from __future__ import annotations

import ast
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rlm_core import RLM
from rlm_core.testing import ScriptedClient

TRANSPORTS = ("http", "sdk")
COLD_RUNS = 5
FAN_RUNS = 3
CALLS, CONCURRENCY = 2048, 128


def start_server(reply: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",  # not -m: the package imports the module first, and runpy warns about that
            "import sys; from rlm_core.testing.servers import main; sys.exit(main(sys.argv[1:]))",
            "--port",
            "0",
            "--reply",
            reply,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(timeout=10)


def cold_run(base_url: str, transport: str, context: Path) -> float:
    rlm = str(Path(sys.executable).with_name("rlm"))
    command = [rlm, "run", str(context), "-q", "What is the answer?", "--backend", "openai"]
    command += ["--model", "loopback", "--backend-kwarg", f"base_url={base_url}", f"transport={transport}"]
    env = {**os.environ, "OPENAI_API_KEY": "sk-bench"}
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - started
    if out.returncode != 0 or out.stdout.strip() != "42":
        raise SystemExit(f"rlm run failed ({transport}): {out.stdout[-500:]} {out.stderr[-1500:]}")
    return elapsed


def fan_out_cpu(base_url: str, transport: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for CALLS sub-calls at CONCURRENCY."""
    code = (
        f"out = llm_query_batched(['q%d' % i for i in range({CALLS})])\n"
        "FINAL(repr((len(out), sum(o.startswith('Error') for o in out))))"
    )
    kwargs = {"model_name": "loopback", "base_url": base_url, "api_key": "bench", "transport": transport}
    rlm = RLM(
        backend=ScriptedClient([f"```repl\n{code}\n```"] * 100),
        other_backends=["openai"],
        other_backend_kwargs=[kwargs],
        max_concurrent_subcalls=CONCURRENCY,
    )
    rlm.completion("warm-up")  # imports, price lookup and the first connections happen here
    wall, cpu = time.perf_counter(), time.process_time()
    result = rlm.completion("context")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rlm.close()
    count, failed = ast.literal_eval(result.response or "(0, -1)")
    if count != CALLS or failed:
        raise SystemExit(f"fan-out ({transport}) gave {result.response!r}: {result.error}")
    return wall, cpu


def main() -> None:
    proc, base_url = start_server('FINAL("42")')
    try:
        with tempfile.TemporaryDirectory() as tmp:
            context = Path(tmp, "context.txt")
            context.write_text("The answer is 42.\n")
            cold_run(base_url, "http", context)  # warm the file cache and bytecode for both
            cold: dict[str, list[float]] = {t: [] for t in TRANSPORTS}
            for _ in range(COLD_RUNS):
                for transport in TRANSPORTS:
                    cold[transport].append(cold_run(base_url, transport, context))
    finally:
        stop(proc)
    medians = {t: statistics.median(runs) for t, runs in cold.items()}
    print("rlm run in a fresh process against a loopback server (target <= 0.8 s wall):")
    for transport in TRANSPORTS:
        runs = ", ".join(f"{r:.2f}" for r in cold[transport])
        print(f"  transport={transport}: median {medians[transport]:.3f} s ({runs})")
    print(f"  sdk / http = {medians['sdk'] / medians['http']:.2f}x")

    proc, base_url = start_server("ok")
    try:
        fans: dict[str, list[tuple[float, float]]] = {t: [] for t in TRANSPORTS}
        for _ in range(FAN_RUNS):
            for transport in TRANSPORTS:
                fans[transport].append(fan_out_cpu(base_url, transport))
    finally:
        stop(proc)
    print(f"{CALLS} sub-calls at concurrency {CONCURRENCY}, engine + client CPU per call (target <= 1 ms):")
    per_call = {}
    for transport in TRANSPORTS:
        per_call[transport] = statistics.median(cpu for _, cpu in fans[transport]) / CALLS
        wall = statistics.median(w for w, _ in fans[transport])
        print(
            f"  transport={transport}: median {per_call[transport] * 1000:.2f} ms CPU per call, "
            f"{wall:.2f} s wall for all {CALLS}"
        )
    print(f"  sdk / http = {per_call['sdk'] / per_call['http']:.2f}x")


if __name__ == "__main__":
    main()
