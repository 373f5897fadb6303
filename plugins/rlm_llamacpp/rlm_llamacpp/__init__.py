"""rlm-llamacpp: an embedded local model served in-process by llama.cpp, the no-API-key backend.

Registers the ``llamacpp`` client and offers it as the no-key default when a model is installed, and
the ``small-model`` strategy, which that client offers as its default (``RLM(strategy=None)`` turns
it off); everything heavy is imported by the factories, on first use.
"""

from __future__ import annotations

from typing import Any

from rlm_core import hookimpl
from rlm_core.plugins.hookspecs import Register
from rlm_core.plugins.signatures import lazy_factory

__version__ = "0.2.0"


def _llamacpp(**backend_kwargs: Any) -> Any:
    from rlm_llamacpp.client import LlamaCppClient

    return LlamaCppClient(**backend_kwargs)


@hookimpl
def rlm_register_clients(register: Register) -> None:
    from rlm_llamacpp.offer import HINT

    register("llamacpp", _llamacpp, hint=HINT)


@hookimpl
def rlm_register_strategies(register: Register) -> None:
    # imported on first use; misspelt settings get a did-you-mean
    register("small-model", lazy_factory("rlm_llamacpp.strategy:SmallModelStrategy"))


@hookimpl
def rlm_default_backend() -> tuple[str, dict[str, Any], str] | None:
    from rlm_llamacpp.offer import default_backend

    return default_backend()
