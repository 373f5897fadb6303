"""``rlm batch``: many completions as one resumable job, with the backend, model, environment,
limit and log flags of ``rlm run``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

_SHARED_GROUPS = ("models", "environment", "limits")


def _run_flags() -> list[tuple[str, list[argparse.Action]]]:
    """The option groups of ``rlm run`` (built by its own parser function, so both stay in step)."""
    from rlm_core.cli.app import add_run_parser

    scratch = argparse.ArgumentParser(add_help=False)
    run_parser = add_run_parser(scratch.add_subparsers())
    groups = []
    for group in run_parser._action_groups:
        title = group.title or ""
        if title.split(" ")[0] in _SHARED_GROUPS:
            groups.append((title, list(group._group_actions)))
    return groups


def add_batch_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "batch",
        help="run many completions from a JSONL file (or a folder), resumably",
        description=(
            "Run one RLM completion per item and append one JSON line per finished item to --output. "
            "Rerunning the same command skips finished items. Exit code 0 when every item ended with a "
            "final answer, 1 when some failed or were held back by a job ceiling, 2 for usage errors "
            "and when another job holds --output."
        ),
    )
    parser.add_argument(
        "items",
        metavar="ITEMS",
        help='a JSONL file of {"id", "context" | "context_path", "question", ...settings} '
        "or a folder of text files (with --question)",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="RESULTS.jsonl",
        help="the results file; held by one job at a time (RESULTS.jsonl.lock beside it)",
    )
    parser.add_argument("-q", "--question", help="the question asked of every file when ITEMS is a folder")
    for title, actions in _run_flags():
        group = parser.add_argument_group(title)
        for action in actions:
            group._add_action(action)
    job = parser.add_argument_group("job")
    job.add_argument("--max-concurrent", type=int, default=8, metavar="N", help="completions at once (8)")
    job.add_argument(
        "--max-model-calls",
        type=int,
        metavar="N",
        help="model calls in flight across the whole job (default: unbounded), for provider rate limits",
    )
    job.add_argument("--max-job-tokens", type=int, metavar="N", help="no new item starts past this total")
    job.add_argument("--max-job-cost", type=float, metavar="USD", help="no new item starts past this cost")
    job.add_argument("--retry-failed", action="store_true", help="run items that failed before again")
    job.add_argument("--cache", metavar="PATH", help="SQLite cache of temperature-0 sub-calls")
    job.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run items on a Ray cluster: ADDRESS (ray://host:10001, auto) or, without one, a local "
        "cluster for this job (give ITEMS before --ray, or write --ray=ADDRESS)",
    )
    out = parser.add_argument_group("output")
    out.add_argument("--log-dir", metavar="DIR", help="write each item's trajectory log into DIR")
    out.add_argument(
        "--json",
        action="store_true",
        help="progress as JSON lines on stderr and the summary as JSON on stdout",
    )
    parser.set_defaults(handler=batch_command)
    return parser


def batch_command(args: argparse.Namespace) -> int:
    from rlm_core.cli.app import EXIT_NO_ANSWER, EXIT_OK, UsageError, build_rlm_kwargs
    from rlm_core.errors import ConfigurationError, PluginError

    for flag, value in (
        ("--max-concurrent", args.max_concurrent),
        ("--max-model-calls", args.max_model_calls),
    ):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    try:
        rlm_kwargs = build_rlm_kwargs(args)
        from rlm_core.rlm import RLM

        RLM(**rlm_kwargs).close()  # a bad backend or setting fails here, once, not once per item
    except (ConfigurationError, PluginError, ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from exc

    from rlm_core.batch import BatchInputError, BatchLockedError, run_batch
    from rlm_core.batch.progress import JsonProgress, RichProgress

    progress: Any = JsonProgress() if args.json else RichProgress() if sys.stderr.isatty() else None
    ray_address = None if args.ray in (None, "local") else args.ray
    try:
        report = run_batch(
            args.items,
            args.output,
            rlm_kwargs=rlm_kwargs,
            rlm_factory=RLM,
            question=args.question,
            max_concurrent=args.max_concurrent,
            max_model_calls=args.max_model_calls,
            max_job_tokens=args.max_job_tokens,
            max_job_cost=args.max_job_cost,
            retry_failed=args.retry_failed,
            cache=args.cache,
            executor="ray" if args.ray else "local",
            ray_address=ray_address,
            log_dir=args.log_dir,
            progress=progress,
            keep_results=False,
        )
    except (BatchInputError, BatchLockedError) as exc:  # a second job on the output: say who holds it
        raise UsageError(str(exc)) from exc
    summary = report.summary
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(summary.describe())
    return EXIT_OK if summary.failed == 0 and summary.not_started == 0 else EXIT_NO_ANSWER
