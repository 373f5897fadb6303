"""rlm-bedrock: AWS Bedrock models (Converse API through boto3) as the rlm-core client ``bedrock``.

Registering imports nothing heavy: boto3 is imported when the first client is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlm_core import hookimpl

__version__ = "0.2.0"


def _bedrock(**backend_kwargs: Any) -> Any:
    from rlm_bedrock.client import BedrockClient

    return BedrockClient(**backend_kwargs)


@hookimpl
def rlm_register_clients(register: Callable[..., Any]) -> None:
    register("bedrock", _bedrock)
