"""The quickstart: one RLM completion. Uses OPENAI_API_KEY if set, else whatever backend
rlm_core.defaults finds (the embedded local model when rlm-llamacpp is installed)."""

import os

from rlm_core import RLM

if os.environ.get("OPENAI_API_KEY"):
    rlm = RLM(backend="openai", backend_kwargs={"model_name": "gpt-5-nano"}, verbose=True)
else:
    rlm = RLM(verbose=True)  # default backend resolution

with rlm:
    result = rlm.completion("Print me the first 10 powers of two, each on a newline.")
    print(result.response)
    print(result.usage_summary.to_dict()["total"])
