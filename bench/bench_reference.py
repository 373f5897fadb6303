"""rlm-core beside the reference RLM engine (the ``rlms`` package) on the same scenarios, as ratios.

Both engines talk to one loopback OpenAI-compatible server running in its own process, whose replies
are scripted by model name, so each engine's root model answers in its own REPL dialect:
(a) the fixed cost of one completion with an instant model, (b) the per-iteration overhead over 30
turns, (c) 256 sub-calls of 50 ms at concurrency 16 through ``llm_query_batched``.

The reference runs in the benchmark's own virtualenv (``bench/.venv-reference``, created and filled
with ``rlms`` from the package index on first use) as a subprocess; this file is its driver there
too, so it imports only the standard library at module level.

Run: ``python bench/bench_reference.py [--runs 5]``. Prints medians and reference / ours ratios
(above 1: the reference is slower).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REFERENCE_VENV = HERE / ".venv-reference"
REFERENCE_PACKAGE = "rlms"  # imports as ``rlm``
TURNS = 30
SUB_CALLS, SUB_CONCURRENCY, SUB_LATENCY = 256, 16, 0.05
SUB_MODEL = "sub-50ms"

# Each engine's way to finish a run from its REPL: ours calls FINAL, the reference sets answer[...].
FINISH = {
    "ours": "FINAL({value})",
    "reference": "answer['content'] = {value}\nanswer['ready'] = True",
}
BATCH_CODE = (
    f"out = llm_query_batched(['q%d' % i for i in range({SUB_CALLS})])\n"
    "failed = sum(1 for o in out if o != 'ok')\n"
)


# -- the scripted server (our interpreter, its own process) --------------------------------------


def _reply(body: dict[str, Any]) -> str:
    """The next reply for a request, chosen by its model name: ``<engine>-<scenario>``."""
    model = str(body.get("model"))
    if model == SUB_MODEL:
        time.sleep(SUB_LATENCY)  # called on the server's per-request thread
        return "ok"
    engine, _, scenario = model.partition("-")
    finish = FINISH[engine]
    if scenario == "final":
        return "```repl\n" + finish.format(value="'done'") + "\n```"
    if scenario == "turns":
        done = sum(1 for m in body.get("messages") or [] if m.get("role") == "assistant")
        if done >= TURNS - 1:
            return "```repl\n" + finish.format(value="'done'") + "\n```"
        return f"```repl\nprint({done})\n```"
    if scenario == "batch":
        return "```repl\n" + BATCH_CODE + finish.format(value="f'{len(out)}:{failed}'") + "\n```"
    raise ValueError(f"unknown benchmark model {model!r}")


def serve() -> None:
    from rlm_core.testing.servers import LoopbackLLMServer

    server = LoopbackLLMServer(_reply).start()
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        server.stop()


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


# -- one side of a scenario (run inside that engine's interpreter) -------------------------------


def _make_engine(engine: str, scenario: str, base_url: str) -> Callable[[], Any]:
    root = {"model_name": f"{engine}-{scenario}", "base_url": base_url, "api_key": "bench"}
    sub = {"model_name": SUB_MODEL, "base_url": base_url, "api_key": "bench"}
    settings: dict[str, Any] = {
        "backend": "openai",
        "backend_kwargs": root,
        "other_backends": ["openai"],
        "other_backend_kwargs": [sub],
        "max_iterations": TURNS + 5,
        "max_concurrent_subcalls": SUB_CONCURRENCY,  # the reference batches 16 at a time regardless
    }
    package = importlib.import_module("rlm_core" if engine == "ours" else "rlm")  # rlms imports as rlm
    rlm = package.RLM(**settings)
    return lambda: rlm.completion("a short context")


def run_side(engine: str, scenario: str, base_url: str, repeats: int) -> list[float]:
    """Seconds per unit of work (a completion, a turn, a batch), once per repeat, after a warm-up."""
    complete = _make_engine(engine, scenario, base_url)
    expected = {"final": "done", "turns": "done", "batch": f"{SUB_CALLS}:0"}[scenario]
    per_unit = TURNS if scenario == "turns" else 1
    complete()  # warm-up: imports, connection pools
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = complete()
        elapsed = time.perf_counter() - started
        response = str(getattr(result, "response", result))
        if response != expected:
            raise SystemExit(f"{engine} {scenario}: answered {response!r}, expected {expected!r}")
        samples.append(elapsed / per_unit)
    return samples


# -- the driver ---------------------------------------------------------------------------------


def reference_python() -> Path:
    """The reference's interpreter, creating its virtualenv and installing the package on first use."""
    python = REFERENCE_VENV / "bin" / "python"
    probe = [str(python), "-c", "import rlm"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {REFERENCE_VENV.relative_to(HERE.parent)} with {REFERENCE_PACKAGE} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(REFERENCE_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", REFERENCE_PACKAGE], check=True)
    return python


def _side(python: Path | str, engine: str, scenario: str, base_url: str, repeats: int) -> list[float] | str:
    command = [str(python), __file__, "--side", engine, scenario, base_url, "--repeats", str(repeats)]
    env = {**os.environ, "PYTHONPATH": ""}  # neither side sees the other's packages
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if out.returncode != 0:
        lines = (out.stderr.strip() or out.stdout.strip() or "no output").splitlines()
        return f"could not run it: {lines[-1]}"
    samples: list[float] = json.loads(out.stdout.strip().splitlines()[-1])
    return samples


SCENARIOS = {
    "final": ("fixed cost of one completion (instant model)", "ms", 1000.0),
    "turns": (f"per-iteration overhead over {TURNS} turns", "ms", 1000.0),
    "batch": (
        f"{SUB_CALLS} sub-calls of {SUB_LATENCY * 1000:.0f} ms at concurrency {SUB_CONCURRENCY}",
        "s",
        1.0,
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="separate processes per scenario and engine")
    parser.add_argument("--repeats", type=int, default=5, help="completions timed per process")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--side", nargs=3, metavar=("ENGINE", "SCENARIO", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    if args.side:
        engine, scenario, base_url = args.side
        print(json.dumps(run_side(engine, scenario, base_url, args.repeats)))
        return
    pythons = {"ours": sys.executable, "reference": str(reference_python())}
    version = subprocess.run(
        [
            pythons["reference"],
            "-c",
            f"import importlib.metadata as m; print(m.version({REFERENCE_PACKAGE!r}))",
        ],
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(
        f"reference: {REFERENCE_PACKAGE} {version}; medians of {args.runs} processes x {args.repeats} repeats"
    )
    proc, base_url = start_server()
    try:
        for scenario, (title, unit, scale) in SCENARIOS.items():
            runs: dict[str, list[float]] = {"ours": [], "reference": []}
            failures: dict[str, str] = {}
            for _ in range(args.runs):  # engines alternate run by run, so both meet the same load
                for engine in [e for e in runs if e not in failures]:
                    samples = _side(pythons[engine], engine, scenario, base_url, args.repeats)
                    if isinstance(samples, str):  # a side that cannot do it is reported once
                        failures[engine] = samples
                    else:
                        runs[engine].append(statistics.median(samples))
            print(f"{title}:")
            medians = {engine: statistics.median(values) for engine, values in runs.items() if values}
            for engine in runs:
                text = failures.get(engine) or f"{medians[engine] * scale:.3f} {unit}"
                print(f"  {engine:10s} {text}")
            if "ours" in medians and "reference" in medians and not failures:
                print(f"  reference / ours = {medians['reference'] / medians['ours']:.2f}x")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
