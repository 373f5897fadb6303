"""``rlm cleanup``: remove sandbox containers that a killed rlm-core process left running."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from rlm_core.errors import RLMError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rlm cleanup``, for the CLI's subparser."""
    parser.add_argument(
        "--all",
        action="store_true",
        help="also remove containers of live rlm-core processes and of other hosts (stops their runs)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    parser.add_argument("--json", action="store_true", help="print the containers as a JSON list")
    parser.add_argument("--base-url", default=None, help="the Docker-API engine (default: DOCKER_HOST)")


def add_cleanup_parser(subparsers: Any) -> None:
    """Register ``rlm cleanup`` with the CLI."""
    parser = subparsers.add_parser(
        "cleanup", help="remove sandbox containers left behind by killed rlm-core processes"
    )
    add_arguments(parser)
    parser.set_defaults(handler=cleanup_main)


def cleanup_main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """Run ``rlm cleanup``; returns the exit code (0 done, 1 the engine could not be reached)."""
    if not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(prog="rlm cleanup", description=__doc__)
        add_arguments(parser)
        args = parser.parse_args(list(args) if args is not None else None)
    from rlm_core.environments.docker_env import cleanup_containers

    try:
        removed = cleanup_containers(
            include_live=bool(getattr(args, "all", False)),
            dry_run=bool(getattr(args, "dry_run", False)),
            base_url=getattr(args, "base_url", None),
        )
    except RLMError as exc:
        print(f"rlm cleanup: {exc}", file=sys.stderr)
        return 1
    if getattr(args, "json", False):
        print(json.dumps(removed, indent=2))
        return 0
    verb = "would remove" if getattr(args, "dry_run", False) else "removed"
    if not removed:
        print("rlm cleanup: no leftover rlm-core containers")
    for entry in removed:
        print(
            f"{verb} container {entry['id'][:12]} (run {entry['run_id'] or '?'}, owner pid "
            f"{entry['owner_pid']} on {entry['owner_host'] or '?'})"
        )
    return 0
