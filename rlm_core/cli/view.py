"""``rlm view [LOG_FILE_OR_DIR]``: serve the trajectory viewer on 127.0.0.1, or ``--export`` one run as HTML."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

from rlm_core.cli.app import EXIT_OK, UsageError


def add_view_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "view",
        help="look at trajectory logs in the browser (live while a run writes)",
        description=(
            "Serve a page on 127.0.0.1 that lists the runs in a log directory (written by "
            "RLMLogger(log_dir=...) or 'rlm run --log-dir DIR') and shows each one: iterations, code, "
            "sub-calls, child runs, timing and usage against the budgets. Stop with Ctrl-C."
        ),
    )
    parser.add_argument(
        "target",
        nargs="?",
        default=".",
        metavar="LOG_FILE_OR_DIR",
        help="a log directory or one .jsonl log (default: the current directory)",
    )
    parser.add_argument(
        "--port", type=int, default=0, metavar="N", help="port to serve on (default: a free one)"
    )
    parser.add_argument("--no-browser", action="store_true", help="print the address, do not open a browser")
    parser.add_argument(
        "--export",
        metavar="RUN.html",
        help="write one self-contained HTML file of the run (the given log, or the newest in the directory)",
    )
    parser.set_defaults(handler=run_view)
    return parser


def run_view(args: argparse.Namespace) -> int:
    from rlm_core.viewer import LogAccessError, LogDirectory

    try:
        logs = LogDirectory(Path(args.target))
    except LogAccessError as exc:
        raise UsageError(str(exc)) from None
    if args.export:
        return _export(logs, Path(args.export))
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    return _serve(logs, args.port, open_browser=not args.no_browser)


def _export(logs: Any, out_path: Path) -> int:
    from rlm_core.viewer import export_html

    files = logs.files()
    if not files:
        raise UsageError(f"no .jsonl logs in {logs.root} to export; pass a log file or a directory with logs")
    if logs.single_file is None:
        print(f"exporting the newest run in {logs.root}: {files[0].name}", file=sys.stderr)
    export_html(files[0], out_path)
    print(out_path)
    return EXIT_OK


def _serve(logs: Any, port: int, *, open_browser: bool) -> int:
    from rlm_core.viewer import ViewerServer

    try:
        server = ViewerServer(logs, port)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on 127.0.0.1:{port} ({exc}); pick another --port or omit it"
        ) from None
    print(f"rlm view: serving {logs.single_file or logs.root} at {server.url} (Ctrl-C stops)", flush=True)
    if open_browser:
        # In a thread: some browsers' launchers block until the window closes.
        threading.Thread(target=_open_browser, args=(server.url,), daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("rlm view: stopped", file=sys.stderr)
    finally:
        server.server_close()
    return EXIT_OK


def _open_browser(url: str) -> None:
    import webbrowser

    try:
        if not webbrowser.open(url):
            print(f"rlm view: no browser found; open {url} yourself", file=sys.stderr)
    except webbrowser.Error:
        print(f"rlm view: no browser found; open {url} yourself", file=sys.stderr)
