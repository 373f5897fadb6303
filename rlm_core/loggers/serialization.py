"""One cattrs converter for every trajectory record, so logs are written and read back the same way.

``converter.structure(json.loads(json.dumps(converter.unstructure(x))), type(x)) == x`` holds for the
records in rlm_core.records, the types in rlm_core.types and ExecResult.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import attrs
import cattrs

from rlm_core.types import ModelUsage, RLMChatCompletion, UsageSummary

# The result line keeps a preview of the prompt, never the whole context (it may be gigabytes).
PROMPT_PREVIEW_CHARS = 500


def prompt_preview(prompt: Any, limit: int = PROMPT_PREVIEW_CHARS) -> str | None:
    """A short string that says what a completion's prompt was; short string prompts stay as they are."""
    if prompt is None:
        return None
    if isinstance(prompt, str):
        text = prompt
        prefix = ""
    else:
        size = f"{len(prompt)} items" if hasattr(prompt, "__len__") else "value"
        text = repr(prompt)
        prefix = f"<{type(prompt).__name__}, {size}> "
    if len(text) <= limit and not prefix:
        return text
    if len(text) <= limit:
        return prefix + text
    return f"{prefix}{text[:limit]}... [{len(text) - limit} more chars]"


# Strings longer than this go into a log line as a preview plus their size and hash.
DEFAULT_MAX_INLINE_CHARS = 20_000
ELIDED_PREVIEW_CHARS = 1_000
ELIDED_KEY = "elided"


@attrs.define(frozen=True)
class ElidedValue:
    """A string left out of a log line: where it was (``path``, dotted keys and list indexes), its
    length, the sha256 of its UTF-8 bytes, and the side file holding it when side files are on."""

    path: str
    chars: int
    sha256: str
    file: str | None = None


# store(text, sha256) -> the side file's name (relative to the log), or None when not stored.
SideFileStore = Callable[[str, str], str | None]


def text_sha256(text: str) -> str:
    # surrogatepass: a lone surrogate (from a context or a model) must not make logging fail.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def elide_large_strings(
    value: Any, max_chars: int, store: SideFileStore | None = None
) -> tuple[Any, list[ElidedValue]]:
    """A copy of a JSON-ready ``value`` where every string longer than ``max_chars`` is replaced by
    a preview that ends with its size and hash (so records still read back), plus what was left out."""
    elided: list[ElidedValue] = []

    def walk(item: Any, path: str) -> Any:
        if isinstance(item, str):
            if len(item) <= max_chars:
                return item
            digest = text_sha256(item)
            file = store(item, digest) if store is not None else None
            elided.append(ElidedValue(path, len(item), digest, file))
            where = f"; full text in {file}" if file else ""
            return f"{item[:ELIDED_PREVIEW_CHARS]}\n[... elided: {len(item):,} characters, sha256 {digest}{where}]"
        if isinstance(item, dict):
            return {key: walk(sub, f"{path}.{key}" if path else str(key)) for key, sub in item.items()}
        if isinstance(item, list):
            return [walk(sub, f"{path}.{index}") for index, sub in enumerate(item)]
        return item

    return walk(value, ""), elided


def _unstructure_usage_summary(summary: UsageSummary) -> list[dict[str, Any]]:
    # JSON objects cannot have tuple keys: one row per (tier, model), sorted for stable output.
    return [
        {"tier": tier, "model": model, **converter.unstructure(usage, ModelUsage)}
        for (tier, model), usage in sorted(summary.by_tier_model.items())
    ]


def _structure_usage_summary(rows: Any, _: type) -> UsageSummary:
    if isinstance(rows, dict) and "by_tier_model" in rows:
        rows = rows["by_tier_model"]
    if not isinstance(rows, list):
        raise ValueError(
            f"usage_summary must be a list of {{tier, model, calls, ...}} rows, got {type(rows).__name__}"
        )
    summary = UsageSummary()
    for row in rows:
        fields = dict(row)
        key = (str(fields.pop("tier")), str(fields.pop("model")))
        summary.by_tier_model[key] = converter.structure(fields, ModelUsage)
    return summary


def _unstructure_completion(completion: RLMChatCompletion) -> dict[str, Any]:
    data = _default_completion_unstructure(completion)
    data["prompt"] = prompt_preview(completion.prompt)
    return data


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter()
    conv.register_unstructure_hook(UsageSummary, _unstructure_usage_summary)
    conv.register_structure_hook(UsageSummary, _structure_usage_summary)
    return conv


converter: cattrs.Converter = _make_converter()
# The generated hook is kept so the override only has to replace the prompt.
_default_completion_unstructure = converter.gen_unstructure_attrs_fromdict(RLMChatCompletion)
converter.register_unstructure_hook(RLMChatCompletion, _unstructure_completion)


def unstructure(value: Any) -> Any:
    """The JSON-ready form of a record (dicts, lists, strings, numbers)."""
    return converter.unstructure(value)


def structure(data: Any, cls: type[Any]) -> Any:
    """Rebuild a record of type ``cls`` from its JSON-ready form."""
    return converter.structure(data, cls)
