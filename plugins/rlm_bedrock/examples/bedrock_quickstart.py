"""Quickstart: an RLM whose root model runs on AWS Bedrock.

Needs AWS credentials with Bedrock access (any of: AWS_PROFILE / `aws sso login`, AWS_ACCESS_KEY_ID +
AWS_SECRET_ACCESS_KEY, a Bedrock API key in AWS_BEARER_TOKEN_BEDROCK or AWS_BEDROCK_API_KEY) and the
model enabled in the region:

    pip install rlm-core rlm-bedrock
    python plugins/rlm_bedrock/examples/bedrock_quickstart.py

BEDROCK_MODEL and AWS_REGION override the model and region below.
"""

from __future__ import annotations

import os

from rlm_core import RLM, RLMLogger

logger = RLMLogger(log_dir="./logs")

rlm = RLM(
    backend="bedrock",
    backend_kwargs={
        # A cross-region inference profile id; plain model ids ("amazon.nova-pro-v1:0") work too.
        "model_name": os.environ.get("BEDROCK_MODEL", "us.anthropic.claude-haiku-4-5-20251001-v1:0"),
        "region_name": os.environ.get("AWS_REGION", "us-east-1"),
        # Optional: "profile_name": "research", "retries": {"max_attempts": 8, "mode": "adaptive"}
    },
    environment="local",  # or "docker" to isolate the model's code
    max_depth=1,
    logger=logger,
    verbose=True,
)

result = rlm.completion("Print me the first 5 powers of two, each on a newline.")

print("\n" + "=" * 50)
print("RLM result:", result.response)
print("stop reason:", result.stop_reason.value, "| error:", result.error)
print("usage:", result.usage_summary.to_dict()["total"])
