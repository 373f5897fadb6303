"""``rlm serve``: an OpenAI-compatible HTTP service in front of RLM profiles (the ``serve`` extra).
The server's modules load only when the command runs (see rlm_core/serve/)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rlm_core.cli.app import EXIT_OK, UsageError

_PROFILE_FLAGS = (
    "backend",
    "model",
    "sub_backend",
    "sub_model",
    "strategy",
    "environment",
    "log_dir",
    "max_iterations",
    "max_depth",
    "max_root_tokens",
    "max_sub_tokens",
    "max_llm_calls",
    "max_cost",
    "max_timeout",
)


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    from rlm_core.cli.batch import _run_flags

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="serve RLMs over an OpenAI-compatible HTTP API",
        description=(
            "Serve POST /v1/chat/completions (plain and streamed), GET /v1/models and GET /healthz. "
            "Each model name is a profile: an RLM configuration from --config, or the one profile the "
            "backend, environment and limit flags of 'rlm run' describe. Needs the serve extra: "
            "pip install 'rlm-core[serve]'. See docs/serve.md."
        ),
    )
    server = parser.add_argument_group("server")
    server.add_argument("--host", help="address to bind (default 127.0.0.1; others need API keys)")
    server.add_argument("--port", type=int, help="port (default 8000; 0: any free port)")
    server.add_argument("--config", metavar="rlm-serve.toml", help="server settings and profiles (TOML)")
    server.add_argument("--keys-file", metavar="KEYS.toml", help="API keys, hashed (see --new-key)")
    server.add_argument(
        "--limits-db", metavar="PATH", help="SQLite file of per-key limits, shared by servers"
    )
    server.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run the completions on a Ray cluster: ADDRESS (ray://host:10001, auto) or, without one, "
        "a local cluster for this server (needs the ray extra)",
    )
    server.add_argument(
        "--profile", default="rlm", metavar="NAME", help="model name of the flags' profile (default: rlm)"
    )
    server.add_argument(
        "--new-key",
        metavar="NAME",
        help="print a new API key and its keys-file entry, and exit",
    )
    for title, actions in _run_flags():
        group = parser.add_argument_group(f"profile {title}")
        for action in actions:
            group._add_action(action)
    out = parser.add_argument_group("profile output")
    out.add_argument("--log-dir", metavar="DIR", help="write each completion's trajectory log into DIR")
    parser.set_defaults(handler=serve_command)
    return parser


def _flag_profile(args: argparse.Namespace) -> dict[str, Any]:
    from rlm_core.cli.app import build_rlm_kwargs

    kwargs = build_rlm_kwargs(args)
    if args.log_dir:
        kwargs["logger"] = f"jsonl:{args.log_dir}"
    return kwargs


def load(args: argparse.Namespace) -> Any:
    """The ServeConfig the arguments describe: the config file's, or one profile from the flags,
    with --host/--port/--keys-file/--limits-db over the file's [server] settings."""
    import attrs

    from rlm_core.serve.config import ServeConfig, ServerSettings, check_profile, load_config

    if args.config:
        given = [f"--{name.replace('_', '-')}" for name in _PROFILE_FLAGS if getattr(args, name, None)]
        given += ["--backend-kwarg"] * bool(args.backend_kwarg) + ["--env-kwarg"] * bool(args.env_kwarg)
        if given:
            raise UsageError(f"{', '.join(given)} describe a profile; with --config, set it in the file")
        config = load_config(args.config)
    else:
        profile = check_profile(args.profile, _flag_profile(args))
        config = ServeConfig(ServerSettings(), {profile.name: profile})
    changes = {
        name: getattr(args, name)
        for name in ("host", "port", "keys_file", "limits_db", "ray")
        if getattr(args, name) is not None
    }
    return attrs.evolve(config, server=attrs.evolve(config.server, **changes)) if changes else config


def serve_command(args: argparse.Namespace) -> int:
    if args.new_key:
        from rlm_core.serve.keys import key_entry, new_key

        key = new_key()
        print(f"key (shown once; give it to the client): {key}", file=sys.stderr)
        print(key_entry(args.new_key, key), end="")
        return EXIT_OK
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"rlm serve needs the serve extra: pip install 'rlm-core[serve]' ({exc})") from exc
    from rlm_core.errors import ConfigurationError, PluginError
    from rlm_core.serve.config import is_loopback
    from rlm_core.serve.keys import KeyRing, keys_from_environment, load_keys_file

    try:
        config = load(args)
        server = config.server
        keys = keys_from_environment(server.key_defaults)
        if server.keys_file:
            keys += load_keys_file(server.keys_file, server.key_defaults)
        ring = KeyRing(keys)
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from exc
    if not is_loopback(server.host) and not len(ring):
        raise UsageError(
            f"refusing to listen on {server.host} without API keys: anyone who reaches it could spend your "
            "provider budget; give --keys-file (or RLM_SERVE_KEYS), or bind 127.0.0.1"
        )
    from rlm_core.serve.app import build_service
    from rlm_core.serve.server import serve

    try:
        service = build_service(config, ring)
    except (ConfigurationError, PluginError, ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from exc

    def ready(port: int) -> None:
        names = ", ".join(config.profiles)
        keys_note = f"{len(ring)} key(s)" if len(ring) else "no keys (loopback only)"
        print(f"rlm serve: http://{server.host}:{port}/v1 serving {names}; {keys_note}", flush=True)

    serve(service, server.host, server.port, ready=ready)
    return EXIT_OK
