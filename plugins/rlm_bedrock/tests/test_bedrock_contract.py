"""The core's client contract suite, run against BedrockClient over the fake Bedrock runtime."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rlm_bedrock.client import BedrockClient
from rlm_bedrock.testing import FakeBedrock

from rlm_core.testing.client_contract import SECRET, ClientContract
from rlm_core.types import TokenUsage

MODEL = "us.amazon.nova-lite-v1:0"


class TestBedrockConverseContract(ClientContract):
    stream = False
    fake: FakeBedrock

    def _client(self, api_key: str) -> BedrockClient:
        # The contract's key-shaped secret serves as a Bedrock API key (a bearer token).
        return BedrockClient(MODEL, region_name="us-west-2", api_key=api_key, stream=self.stream,
                             retries={"total_max_attempts": 1})  # fmt: skip

    def make_client(self, replies: Sequence[str], api_key: str) -> Any:
        client = self._client(api_key)
        self.fake = FakeBedrock(list(replies)).install(client.boto3_client)
        return client

    def make_failing_client(self) -> Any:
        client = self._client(SECRET)
        fake = FakeBedrock().install(client.boto3_client)
        fake.fail_next(100, code="InternalServerException", status=500, message="internal failure")
        return client

    def counted_usage(self) -> TokenUsage | None:
        return TokenUsage(self.fake.total_input_tokens, self.fake.total_output_tokens)


class TestBedrockConverseStreamContract(TestBedrockConverseContract):
    stream = True
