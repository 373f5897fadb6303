"""What the tests on a real local Ray cluster share: Ray itself (CI installs the ray extra and runs
them; elsewhere the importing module is skipped when Ray is missing) and a module-wide cluster."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

try:
    import ray
except ImportError:  # pragma: no cover - depends on the machine
    if os.environ.get("CI"):
        raise  # CI installs the ray extra: a missing Ray there is a broken set-up, not a skip
    pytest.skip(
        "Ray is not installed (pip install 'rlm-core[ray]'); CI installs it and runs these tests",
        allow_module_level=True,
    )

__all__ = ["ray", "ray_cluster"]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    # A local cluster on this machine only, stopped when the module is done.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()
