"""Settings for the whole test run, across the core's and the plugins' test folders."""

from __future__ import annotations

import signal


def pytest_configure() -> None:
    # A test run started as a background job (CI runners, `make check &`) inherits SIGINT ignored:
    # shells ignore it for background commands. The Ctrl-C tests need the interpreter's own
    # handling, here and in the processes they start (a caught signal is reset to its default
    # on exec; an ignored one stays ignored).
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
