"""Runs a short Python program in a fresh interpreter, for what only a new process shows: which
modules an import loads, and what the OpenTelemetry environment variables and exit-time flush do."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 120.0) -> str:
    """Run ``code``; returns its stdout, failing the test with its stderr if it exits non-zero. The
    child gets this environment without any OTEL_* or RLM_OTEL_* variable, plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "RLM_OTEL_"))}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
