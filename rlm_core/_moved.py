"""Old import paths of modules that moved into subpackages keep working, with a DeprecationWarning.

One table owns every move; a meta-path finder hands out the moved module itself (not a copy), so
``import rlm_core.broker`` and ``import rlm_core.engine.broker`` give the same object.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import warnings
from types import ModuleType

MOVED = {
    "rlm_core.broker": "rlm_core.engine.broker",
    "rlm_core.budget": "rlm_core.engine.budget",
    "rlm_core.tokens": "rlm_core.engine.tokens",
    "rlm_core.emitter": "rlm_core.engine.emitter",
    "rlm_core.run": "rlm_core.engine.run",
    "rlm_core.guards": "rlm_core.guidance.guards",
    "rlm_core.first_search": "rlm_core.guidance.first_search",
    "rlm_core.prompts": "rlm_core.guidance.prompts",
    "rlm_core.parsing": "rlm_core.guidance.parsing",
    "rlm_core.hookspecs": "rlm_core.plugins.hookspecs",
    "rlm_core.builtins": "rlm_core.plugins.builtins",
    "rlm_core.repl_runtime": "rlm_core.environments.runtime",
    "rlm_core.pricing": "rlm_core.clients.pricing",
    "rlm_core.cli_cleanup": "rlm_core.cli.cleanup",
}


class _MovedModuleLoader:  # a loader by protocol: importlib.abc would cost an import of its own
    def __init__(self, new_name: str) -> None:
        self.new_name = new_name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.new_name}; import it from there (the old path will be removed)",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(self.new_name)

    def exec_module(self, module: ModuleType) -> None:
        return None  # the moved module is already executed


class _MovedModuleFinder:  # a meta-path finder by protocol (find_spec)
    def find_spec(
        self, fullname: str, path: object, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        new_name = MOVED.get(fullname)
        if new_name is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _MovedModuleLoader(new_name))  # type: ignore[arg-type]


def install() -> None:
    """Add the finder once (idempotent, so reloading ``rlm_core`` does not stack finders)."""
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
