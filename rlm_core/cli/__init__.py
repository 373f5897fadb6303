"""The ``rlm`` command line: ``rlm run``, ``rlm plugins``, ``rlm cleanup``."""

from rlm_core.cli.app import main

__all__ = ["main"]
