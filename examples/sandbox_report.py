"""Answer a question over a long document with the REPL running in a cloud sandbox (rlm-modal or
rlm-prime), or any other sandbox environment installed.

Needs the service's credentials on this machine (Modal: `modal token new`; Prime: PRIME_API_KEY or
`prime login`) and a model key (here OPENAI_API_KEY); neither enters the sandbox. Run:

    python examples/sandbox_report.py modal report.txt "Who signed off the inspection?"
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from rlm_core import RLM

# Each service's own settings, then the per-cell limit every sandbox takes. The service-side limit
# (sandbox_timeout, timeout_minutes) is the backstop that ends the sandbox if this process is killed.
SETTINGS: dict[str, dict[str, Any]] = {
    "modal": {
        "python_version": "3.12",
        "pip": ["regex"],
        "cpu": 1.0,
        "memory": "2g",
        "sandbox_timeout": 1800,
    },
    "prime": {"python_version": "3.12", "cpu_cores": 1, "memory_gb": 2, "timeout_minutes": 30},
}


def main() -> None:
    environment, path, question = sys.argv[1:4]
    with open(path, encoding="utf-8") as handle:
        document = handle.read()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")  # shows sandbox start-up
    with RLM(
        backend="openai",
        backend_kwargs={"model_name": "gpt-5-mini"},
        environment=environment,
        environment_kwargs={**SETTINGS.get(environment, {}), "timeout": 120},
    ) as rlm:
        result = rlm.completion(document, root_prompt=question)
    print(result.response)
    print(result.usage_summary.to_dict())


if __name__ == "__main__":
    main()
