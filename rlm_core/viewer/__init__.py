"""``rlm view``: a trajectory viewer in the browser, served by the standard library from this package."""

from rlm_core.viewer.export import export_html
from rlm_core.viewer.logfiles import LogAccessError, LogDirectory
from rlm_core.viewer.server import ViewerServer, serve

__all__ = ["LogAccessError", "LogDirectory", "ViewerServer", "export_html", "serve"]
