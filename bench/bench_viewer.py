"""Viewer benchmarks in headless Chromium: a ~50 MB log with 2,000 sub-calls (from a real scripted run).

Measures, as medians of 3: the run list's answer for that log, the time until the run view is usable
(first iterations rendered) and until the whole log is read, the JS heap after loading, and how long a
line appended to a log being written takes to show on the page. Prints ratios to the targets.

Run: python bench/bench_viewer.py [--log BIG.jsonl] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from rlm_core.viewer.headless import CHROMIUM, launch
from rlm_core.viewer.samples import write_large_run, write_rich_run
from rlm_core.viewer.server import running

REPEATS = 3
USABLE_TARGET_S = 2.0
LIVE_TARGET_S = 1.0


def median(values: list[float]) -> float:
    return statistics.median(values)


def list_time(url: str, big: Path) -> float:
    """Seconds for /api/runs to answer, with a fresh server cache each time (the file is touched)."""
    big.touch()
    started = time.perf_counter()
    with urllib.request.urlopen(url + "api/runs", timeout=60) as response:
        response.read()
    return time.perf_counter() - started


def open_big_run(browser: Any, url: str, name: str) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        page.goto(url + "#/run/" + name, wait_until="commit")
        # Seen through the driver: the page had the iteration in its DOM and answered a query about it.
        page.wait_for_selector("#timeline > li", timeout=60_000)
        usable = page.evaluate("performance.now()") / 1000
        mark = page.evaluate("performance.getEntriesByName('rlm-first-iteration')[0].startTime") / 1000
        page.wait_for_selector("#run[data-loaded='true']", timeout=120_000)
        loaded = page.evaluate("performance.now()") / 1000
        session = context.new_cdp_session(page)
        session.send("HeapProfiler.collectGarbage")
        heap = session.send("Runtime.getHeapUsage")["usedSize"] / 1e6
        iterations = page.locator("#timeline > li").count()
        return {"usable": usable, "mark": mark, "loaded": loaded, "heap_mb": heap, "iterations": iterations}
    finally:
        context.close()


def live_latency(browser: Any, work: Path) -> float:
    """Seconds from appending an iteration line to a growing log until the page shows it."""
    lines = write_rich_run(work / "source").read_bytes().splitlines(keepends=True)
    live_dir = work / "live"
    live_dir.mkdir(exist_ok=True)
    target = live_dir / "growing.jsonl"
    iteration_lines = [line for line in lines if b'"type": "iteration"' in line and b'"depth": 0' in line]
    target.write_bytes(lines[0])
    with running(live_dir) as server:
        context = browser.new_context()
        try:
            return _appended_line_latency(context.new_page(), server.url, target, iteration_lines)
        finally:
            context.close()


def _appended_line_latency(page: Any, url: str, target: Path, iteration_lines: list[bytes]) -> float:
    page.goto(url + "#/run/growing.jsonl")
    page.wait_for_selector("#live:not([hidden])")
    latencies = []
    for count, line in enumerate(iteration_lines[:REPEATS], start=1):
        time.sleep(0.3)  # the page is waiting in its long poll, as it would be for a real run
        with target.open("ab") as handle:
            handle.write(line)
        started = time.perf_counter()
        page.wait_for_function(f"document.querySelectorAll('#timeline > li').length >= {count}")
        latencies.append(time.perf_counter() - started)
    return median(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, help="an existing big log (default: generate one)")
    parser.add_argument("--chromium", default=CHROMIUM)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="rlm-bench-viewer-") as tmp:
        work = Path(tmp)
        if args.log is None:
            started = time.perf_counter()
            big = write_large_run(work / "big")
            print(
                f"generated {big.stat().st_size / 1e6:.1f} MB log with 2000 sub-calls "
                f"in {time.perf_counter() - started:.1f} s (real run, scripted models)"
            )
        else:
            big = args.log
        with running(big) as server:
            lists = [list_time(server.url, big) for _ in range(REPEATS)]
            print(
                f"run list for the {big.stat().st_size / 1e6:.1f} MB log: median {median(lists) * 1000:.1f} ms"
            )
            with sync_playwright() as playwright:
                browser = launch(playwright, args.chromium)
                runs = [open_big_run(browser, server.url, big.name) for _ in range(REPEATS)]
                usable = median([r["usable"] for r in runs])
                mark = median([r["mark"] for r in runs])
                loaded = median([r["loaded"] for r in runs])
                heap = median([r["heap_mb"] for r in runs])
                print(
                    f"run view usable (first iterations rendered): median {usable:.2f} s "
                    f"(target < {USABLE_TARGET_S:.0f} s, ratio {usable / USABLE_TARGET_S:.2f})"
                )
                print(f"first iteration in the DOM (the page's own performance mark): median {mark:.2f} s")
                print(
                    f"whole log read and rendered ({runs[0]['iterations']:.0f} iterations): median {loaded:.2f} s"
                )
                print(
                    f"JS heap after loading (after GC): median {heap:.1f} MB "
                    f"for a {big.stat().st_size / 1e6:.0f} MB log ({heap / (big.stat().st_size / 1e6):.2f} MB per MB)"
                )
                live = live_latency(browser, work)
                print(
                    f"live: appended iteration shown after median {live * 1000:.0f} ms "
                    f"(target < {LIVE_TARGET_S:.0f} s, ratio {live / LIVE_TARGET_S:.2f})"
                )
                browser.close()


if __name__ == "__main__":
    main()
