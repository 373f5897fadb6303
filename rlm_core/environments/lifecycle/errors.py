"""A failing service call, reported as what the plugin was doing: one line instead of a try block."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rlm_core.errors import RLMError, SandboxError


@contextlib.contextmanager
def reported_as(what: str, error: type[SandboxError] = SandboxError) -> Iterator[None]:
    """Any exception in the block becomes ``error(f"{what}: {exc}")`` (chained to it), e.g.
    ``with reported_as(f"could not write {path} into {self.describe()}"): await sdk.write(...)``.
    rlm-core's own errors pass through unchanged: they already say what happened."""
    try:
        yield
    except RLMError:
        raise
    except Exception as exc:
        raise error(f"{what}: {exc}") from exc
