"""Joining a Ray cluster for the parts that run on one (``rlm batch --ray``, ``rlm serve --ray``):
the one rule for connecting, so both start a local cluster the same way. Ray itself is imported by
the caller, only when it is used (the ``ray`` extra)."""

from __future__ import annotations

from typing import Any


def connect(ray: Any, address: str | None) -> bool:
    """Connect this process to ``address`` (``auto``, ``ray://host:10001``), or with None start a
    local cluster for it alone, on 127.0.0.1. Already connected, nothing changes. True when this
    call connected, so the caller's close shuts the connection (and a cluster it started) down."""
    if ray.is_initialized():
        return False
    if address is None:
        ray.init(include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    else:
        ray.init(address=address, log_to_driver=False)
    return True
