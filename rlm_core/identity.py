"""Is the imported ``rlm_core`` ours? An unrelated ``rlm-core`` 0.1.0 with the same import name is
published on the public package index; this tells the two apart and says how to fix a mix-up."""

from __future__ import annotations

import importlib
import re
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType

__all__ = ["DISTRIBUTION", "MINIMUM_VERSION", "foreign_core_problem"]

DISTRIBUTION = "rlm-core"
# Our first release; everything below it on the index is the unrelated project.
MINIMUM_VERSION = (0, 2)
_FIX = 'pip uninstall rlm-core && pip install "rlm-core>=0.2"'
# Names only our package defines: the plugin marker and the version attribute.
_MARKERS = ("hookimpl", "hookspec", "__version__")


def foreign_core_problem() -> str | None:
    """A message saying what is wrong and what to run when the imported ``rlm_core`` is not ours, else ``None``.

    Checks the installed ``rlm-core`` distribution's version (at least 0.2), that the imported module
    is the file that distribution installed (not a second copy elsewhere on ``sys.path``), and that
    the module carries our markers. Without any installed distribution (a source checkout on
    ``sys.path``) only the markers are checked.
    """
    module = sys.modules.get("rlm_core") or importlib.import_module("rlm_core")
    where = getattr(module, "__file__", None) or "an unknown location"
    try:
        dist: metadata.Distribution | None = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        dist = None
    problems: list[str] = []
    if dist is not None:
        version = dist.version or "unknown"
        if _release(version) < MINIMUM_VERSION:
            problems.append(
                f"the installed distribution {DISTRIBUTION} {version} is older than 0.2: it is the unrelated "
                "package of the same name on the public index, not this project"
            )
        installed = _installed_init(dist)
        if installed is not None and not _same_file(installed, module):
            problems.append(
                f"the imported rlm_core ({where}) is not the copy that {DISTRIBUTION} {version} installed "
                f"({installed}); another rlm_core earlier on sys.path shadows it"
            )
    missing = [name for name in _MARKERS if not hasattr(module, name)]
    if missing:
        problems.append(
            f"the imported rlm_core ({where}) lacks {', '.join(missing)}, which this project defines"
        )
    if not problems:
        return None
    return f"rlm_core is not the expected package: {'; '.join(problems)}. To fix it run: {_FIX}"


def _release(version: str) -> tuple[int, ...]:
    # "0.2.0", "0.2.0rc1", "1.0+local": the leading numeric release segments are all we compare.
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", version)
    if match is None:
        return (0,)
    return tuple(int(part) for part in match.group(1).split("."))


def _installed_init(dist: metadata.Distribution) -> Path | None:
    """Where the distribution says it put ``rlm_core/__init__.py``; ``None`` when it does not list it
    (an editable install maps the package through a path hook instead)."""
    for file in dist.files or ():
        if file.as_posix() == "rlm_core/__init__.py":
            return Path(str(dist.locate_file(file)))
    return None


def _same_file(installed: Path, module: ModuleType) -> bool:
    imported = getattr(module, "__file__", None)
    if imported is None:
        return False
    try:
        return installed.resolve() == Path(imported).resolve()
    except OSError:
        return False
