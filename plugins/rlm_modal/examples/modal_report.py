"""Answer a question over a long document with the REPL running in a Modal Sandbox.

Needs a Modal token on this machine (`modal token new`) and a model key (here OPENAI_API_KEY); neither
enters the sandbox. Run: python examples/modal_report.py report.txt "Who signed off the inspection?"
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
        environment="modal",
        environment_kwargs={
            "python_version": "3.12",
            "pip": ["regex"],  # baked into the image, so cells can import it
            "cpu": 1.0,
            "memory": "2g",
            "sandbox_timeout": 1800,  # the hard backstop if this process is killed
            "timeout": 120,  # per cell
        },
    ) as rlm:
        result = rlm.completion(document, root_prompt=question)
    print(result.response)
    print(result.usage_summary.to_dict())


if __name__ == "__main__":
    main()
