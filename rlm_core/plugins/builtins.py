"""The built-in plugin: rlm-core registers its own clients, environments, policies and loggers
through the same hooks a third-party plugin uses. Factories import their modules lazily
(``lazy_factory``), so discovering plugins imports no client, environment or logger module."""

from __future__ import annotations

from typing import Any

from rlm_core.plugins.hookspecs import Register, hookimpl
from rlm_core.plugins.signatures import lazy_factory


def _preset(name: str) -> Any:
    def factory(**kwargs: Any) -> Any:
        from rlm_core.clients.presets import make_preset_client

        return make_preset_client(name, **kwargs)

    return factory


# Kept here (not imported from presets) so plugin discovery never imports a client module.
PRESET_NAMES = ("openrouter", "portkey", "litellm", "vllm", "azure_openai", "gemini")


@hookimpl(tryfirst=True)  # built-ins register first; a plugin replaces one with replace=True
def rlm_register_clients(register: Register) -> None:
    register("openai", lazy_factory("rlm_core.clients.openai_client:OpenAIClient"))
    register("anthropic", lazy_factory("rlm_core.clients.anthropic_client:AnthropicClient"))
    for name in PRESET_NAMES:
        register(name, _preset(name))


@hookimpl(tryfirst=True)  # built-ins register first; a plugin replaces one with replace=True
def rlm_register_environments(register: Register) -> None:
    register("local", lazy_factory("rlm_core.environments.local:LocalEnvironment"))
    register("subprocess", lazy_factory("rlm_core.environments.subprocess_env:SubprocessEnvironment"))
    register("docker", lazy_factory("rlm_core.environments.docker_env:DockerEnvironment"))


@hookimpl(tryfirst=True)  # built-ins register first; a plugin replaces one with replace=True
def rlm_register_routing_policies(register: Register) -> None:
    register("tiered", lazy_factory("rlm_core.routing:TieredPolicy"))
    register("fallback", lazy_factory("rlm_core.routing:FallbackPolicy"))


@hookimpl(tryfirst=True)  # built-ins register first; a plugin replaces one with replace=True
def rlm_register_loggers(register: Register) -> None:
    register("jsonl", lazy_factory("rlm_core.loggers.jsonl:RLMLogger"))
    register("console", lazy_factory("rlm_core.loggers.console:ConsoleLogger"))


_DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"


@hookimpl
def rlm_cleanup_sandboxes(include_live: bool, dry_run: bool) -> list[dict[str, Any]]:
    """Docker containers of killed rlm-core processes; nothing to do where no engine is configured."""
    import importlib.util
    import os

    if importlib.util.find_spec("docker") is None:
        return []  # without docker-py this installation never started a container
    if not os.environ.get("DOCKER_HOST") and not os.path.exists(_DEFAULT_DOCKER_SOCKET):
        return []
    from rlm_core.environments.docker_env import cleanup_containers
    from rlm_core.errors import RLMError

    try:  # the rows say what was removed, and why a removal failed, as they are
        return cleanup_containers(include_live=include_live, dry_run=dry_run)
    except RLMError as exc:
        return [{"kind": "docker", "error": str(exc)}]
