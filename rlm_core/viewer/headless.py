"""How the viewer's tests and benchmark start Debian's Chromium through Playwright (no browser download)."""

from __future__ import annotations

import os
from typing import Any

CHROMIUM = os.environ.get("RLM_VIEWER_CHROMIUM", "/usr/bin/chromium")
# Quiet on a closed network: no first-run pages, no update, sync or background requests.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-precise-memory-info",
]


def launch(playwright: Any, executable: str = CHROMIUM) -> Any:
    """A headless Chromium browser from ``playwright`` (a started ``sync_playwright()``)."""
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
