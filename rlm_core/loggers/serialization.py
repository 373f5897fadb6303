"""One cattrs converter for every trajectory record, so logs are written and read back the same way.

``converter.structure(json.loads(json.dumps(converter.unstructure(x))), type(x)) == x`` holds for the
records in rlm_core.records, the types in rlm_core.types and ExecResult.
"""

from __future__ import annotations

from typing import Any

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
