"""A root model from Anthropic with a cheaper sub-model tier from OpenAI, token budgets and a JSONL log.

Needs ANTHROPIC_API_KEY and OPENAI_API_KEY.
"""

from rlm_core import RLM, RLMLogger

rlm = RLM(
    backend="anthropic",
    backend_kwargs={"model_name": "claude-sonnet-4-5"},
    other_backends=["openai"],  # depth >= 1: llm_query and child RLMs
    other_backend_kwargs=[{"model_name": "gpt-5-mini"}],
    max_root_tokens=200_000,  # all depth-0 calls of one completion()
    max_sub_tokens=500_000,  # all deeper calls together
    logger=RLMLogger(log_dir="./logs"),
    verbose=True,
)

with rlm:
    document = "\n".join(f"Line {i}: sensor {i % 7} read {i * 37 % 101}" for i in range(20_000))
    result = rlm.completion(document, root_prompt="Which sensor has the highest average reading?")
    print(result.response)
    print(result.usage_summary.to_dict()["tiers"])
