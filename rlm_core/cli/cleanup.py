"""``rlm cleanup``: remove sandboxes that killed rlm-core processes left running, asking every plugin."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

CLEANUP_HOOK = "rlm_cleanup_sandboxes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rlm cleanup``, for the CLI's subparser."""
    parser.add_argument(
        "--all",
        action="store_true",
        help="also remove sandboxes of live rlm-core processes and of other hosts (stops their runs)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    parser.add_argument("--json", action="store_true", help="print the sandboxes as a JSON list")
    parser.add_argument("--base-url", default=None, help="the Docker-API engine (default: DOCKER_HOST)")


def add_cleanup_parser(subparsers: Any) -> None:
    """Register ``rlm cleanup`` with the CLI."""
    parser = subparsers.add_parser(
        "cleanup", help="remove sandboxes left behind by killed rlm-core processes (every sandbox plugin)"
    )
    add_arguments(parser)
    parser.set_defaults(handler=cleanup_main)


@contextlib.contextmanager
def _docker_host(base_url: str | None) -> Iterator[None]:
    """The docker plugin reads DOCKER_HOST like every docker client; --base-url overrides it for the call."""
    if not base_url:
        yield
        return
    previous = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = base_url
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = previous


def collect_cleanup(*, include_live: bool, dry_run: bool, registry: Any = None) -> list[dict[str, Any]]:
    """Every plugin's answer to ``rlm_cleanup_sandboxes``, one dict per sandbox or error, each with the
    ``plugin`` that answered; a plugin that raised or answered nonsense becomes an error entry."""
    if registry is None:
        from rlm_core.plugins import get_registry

        registry = get_registry()
    entries: list[dict[str, Any]] = []
    for answer in registry.call_each(CLEANUP_HOOK, include_live=include_live, dry_run=dry_run):
        if answer.error is not None:
            message = f"{type(answer.error).__name__}: {answer.error}"
            entries.append({"kind": answer.plugin, "plugin": answer.plugin, "error": message})
            continue
        items = answer.value
        if items is None:
            continue
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            entries.append(
                {
                    "kind": answer.plugin,
                    "plugin": answer.plugin,
                    "error": f"{CLEANUP_HOOK} returned a {type(items).__name__}, expected a list of dicts; "
                    "report this to the plugin's authors",
                }
            )
            continue
        entries.extend({"kind": answer.plugin, **item, "plugin": answer.plugin} for item in items)
    return entries


def _describe(entry: dict[str, Any], dry_run: bool) -> str:
    done = "would remove" if dry_run else "removed" if entry.get("removed", True) else "could not remove"
    identifier = str(entry.get("id", "?"))
    if len(identifier) > 32:  # docker's 64-hex ids: the 12-character short form, as docker prints them
        identifier = identifier[:12]
    text = (
        f"{done} {identifier} (run {entry.get('run_id') or '?'}, owner pid "
        f"{entry.get('owner_pid') or '?'} on {entry.get('owner_host') or '?'})"
    )
    return text + (f": {entry['error']}" if entry.get("error") else "")


def cleanup_main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """Run ``rlm cleanup``; returns the exit code (0 done, 1 some plugin could not reach its service)."""
    if not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(prog="rlm cleanup", description=__doc__)
        add_arguments(parser)
        args = parser.parse_args(list(args) if args is not None else None)
    dry_run = bool(getattr(args, "dry_run", False))
    with _docker_host(getattr(args, "base_url", None)):
        entries = collect_cleanup(include_live=bool(getattr(args, "all", False)), dry_run=dry_run)
    failures = [entry for entry in entries if "error" in entry and "id" not in entry]
    for entry in failures:
        print(f"rlm cleanup: {entry['kind']}: {entry['error']}", file=sys.stderr)
    sandboxes = [entry for entry in entries if entry not in failures]
    if getattr(args, "json", False):
        print(json.dumps(sandboxes, indent=2, default=str))
        return 1 if failures else 0
    if not sandboxes and not failures:
        print("rlm cleanup: no leftover rlm-core sandboxes")
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for entry in sandboxes:
        by_kind.setdefault(str(entry["kind"]), []).append(entry)
    for kind, group in by_kind.items():
        print(f"{kind}:")
        for entry in group:
            print(f"  {_describe(entry, dry_run)}")
    return 1 if failures else 0
