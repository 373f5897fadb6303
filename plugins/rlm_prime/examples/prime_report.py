"""Answer a question over a long document with the REPL running in a Prime Intellect sandbox.

Needs PRIME_API_KEY (or `prime login`) and a model key (here OPENAI_API_KEY) on this machine; neither
enters the sandbox. Run: python examples/prime_report.py report.txt "Who signed off the inspection?"
"""

from __future__ import annotations

import logging
import sys

from rlm_core import RLM


def main() -> None:
    path, question = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as handle:
        document = handle.read()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")  # shows sandbox start-up
    with RLM(
        backend="openai",
        backend_kwargs={"model_name": "gpt-5-mini"},
        environment="prime",
        environment_kwargs={
            "python_version": "3.12",
            "cpu_cores": 1,
            "memory_gb": 2,
            "timeout_minutes": 30,  # the hard backstop if this process is killed
            "timeout": 120,  # per cell
        },
    ) as rlm:
        result = rlm.completion(document, root_prompt=question)
    print(result.response)
    print(result.usage_summary.to_dict())


if __name__ == "__main__":
    main()
