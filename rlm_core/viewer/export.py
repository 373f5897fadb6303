"""``rlm view --export``: one self-contained HTML file of a run (page, styles, script and log inline)."""

from __future__ import annotations

import json
from pathlib import Path

from rlm_core.viewer.server import static_text

_STYLESHEET_TAG = '<link rel="stylesheet" href="static/viewer.css">'
_SCRIPT_TAG = '<script src="static/viewer.js"></script>'


def _inline_safe(text: str) -> str:
    # Nothing inside an inline <script>/<style> may close it early: "</" never appears as such.
    return text.replace("</", "<\\/")


def export_html(log_path: Path, out_path: Path) -> Path:
    """Write ``out_path``: the viewer page with ``log_path``'s lines embedded; opens with no server."""
    text = log_path.read_text(encoding="utf-8", errors="replace")
    # "<" is escaped inside JSON strings (and JSON has no "<" elsewhere), so the data cannot end the tag.
    data = json.dumps({"file": log_path.name, "text": text}).replace("<", "\\u003c")
    page = static_text("index.html")
    page = page.replace(_STYLESHEET_TAG, "<style>\n" + _inline_safe(static_text("viewer.css")) + "\n</style>")
    page = page.replace(
        _SCRIPT_TAG,
        f'<script type="application/json" id="rlm-embedded">{data}</script>\n'
        f"<script>\n{_inline_safe(static_text('viewer.js'))}\n</script>",
    )
    page = page.replace("<title>rlm view</title>", f"<title>rlm view: {_html_text(log_path.name)}</title>")
    out_path.write_text(page, encoding="utf-8")
    return out_path


def _html_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
