"""Typed sub-call answers: ``llm_query(prompt, choices=[...])`` or ``schema={...}``. Builds the schema a
provider's structured output is asked for, reads a reply back into a value and validates it against a
small JSON-schema subset (type, enum, const, properties, required, items, additionalProperties)."""

from __future__ import annotations

import json
import re
from typing import Any

import attrs

from rlm_core.errors import RLMError

# The wire schema is always an object, since OpenAI structured outputs and Anthropic tool inputs
# require one; a bare schema (a string from a list of choices, a number, a list) is wrapped in it.
WRAP_KEY = "answer"
SCHEMA_NAME = "answer"
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}
_KNOWN_KEYWORDS = frozenset(
    ("type", "enum", "const", "properties", "required", "items", "additionalProperties", "description",
     "title", "$schema", "default", "examples")
)  # fmt: skip
_FENCE = re.compile(r"^\s*```(?:json)?\s*\n?(.*?)\n?```\s*$", re.S)


class TypedAnswerError(RLMError):
    """A typed sub-call got no answer of the requested shape, even after one corrective retry."""


@attrs.define(frozen=True)
class AnswerSpec:
    """What a typed ``llm_query`` asked for. ``schema`` is the user's schema (or the enum built
    from ``choices``); ``wire`` is what the provider is given."""

    schema: dict[str, Any]
    choices: tuple[Any, ...] | None = None

    @property
    def wrapped(self) -> bool:
        return self.schema.get("type") != "object"

    @property
    def wire(self) -> dict[str, Any]:
        if not self.wrapped:
            return self.schema
        return {
            "type": "object",
            "properties": {WRAP_KEY: self.schema},
            "required": [WRAP_KEY],
            "additionalProperties": False,
        }

    def instruction(self) -> str:
        """What the prompt is told, for providers that get no structured output (and as a hint)."""
        if self.choices is not None:
            options = ", ".join(json.dumps(c) for c in self.choices)
            return f"Answer with exactly one of: {options}. Reply with only that answer."
        return "Reply with only a JSON value matching this schema: " + json.dumps(self.schema)


def answer_spec(choices: Any = None, schema: Any = None) -> AnswerSpec | None:
    """The spec for ``llm_query``'s ``choices``/``schema`` arguments (None: a plain text answer)."""
    if choices is None and schema is None:
        return None
    if choices is not None and schema is not None:
        raise TypedAnswerError("llm_query takes choices= or schema=, not both; pass one of them.")
    if choices is not None:
        if isinstance(choices, (str, bytes, dict)) or not isinstance(choices, (list, tuple)) or not choices:
            raise TypedAnswerError(
                f"choices must be a non-empty list such as ['yes', 'no'], got {choices!r}."
            )
        if not all(isinstance(c, (str, int, float, bool)) for c in choices):
            raise TypedAnswerError(f"choices must be strings or numbers, got {choices!r}.")
        options = tuple(dict.fromkeys(choices))
        return AnswerSpec({"enum": list(options)}, options)
    if not isinstance(schema, dict):
        raise TypedAnswerError(
            f"schema must be a JSON-schema dict such as {{'type': 'integer'}}, got {type(schema).__name__}."
        )
    check_schema(schema)
    return AnswerSpec(schema)


def check_schema(schema: dict[str, Any], path: str = "schema") -> None:
    """Refuse keywords this validator does not know, so a schema is never half-checked silently."""
    unknown = sorted(set(schema) - _KNOWN_KEYWORDS)
    if unknown:
        raise TypedAnswerError(
            f"{path} uses {', '.join(unknown)}, which typed llm_query answers do not support; use only "
            "type, enum, const, properties, required, items and additionalProperties."
        )
    types = schema.get("type")
    for name in types if isinstance(types, list) else [types] if types is not None else []:
        if name not in _TYPES:
            raise TypedAnswerError(f"{path}: unknown type {name!r}; use one of {', '.join(_TYPES)}.")
    for key, sub in (schema.get("properties") or {}).items():
        check_schema(sub, f"{path}.properties.{key}")
    if isinstance(schema.get("items"), dict):
        check_schema(schema["items"], f"{path}.items")


def validate(value: Any, schema: dict[str, Any], path: str = "answer") -> str | None:
    """The first way ``value`` breaks ``schema``, or None when it matches."""
    if "const" in schema and value != schema["const"]:
        return f"{path} must be {json.dumps(schema['const'])}, got {json.dumps(value)}"
    if "enum" in schema and not any(_same(value, option) for option in schema["enum"]):
        options = ", ".join(json.dumps(o) for o in schema["enum"])
        return f"{path} must be one of {options}, got {json.dumps(value)}"
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not any(_is_type(value, name) for name in names):
            return f"{path} must be of type {' or '.join(names)}, got {json.dumps(value)}"
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                return f"{path} is missing the required property {key!r}"
        properties = schema.get("properties") or {}
        for key, item in value.items():
            if key in properties:
                problem = validate(item, properties[key], f"{path}.{key}")
                if problem:
                    return problem
            elif schema.get("additionalProperties") is False:
                return f"{path} has the property {key!r}, which the schema does not allow"
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            problem = validate(item, schema["items"], f"{path}[{index}]")
            if problem:
                return problem
    return None


def _is_type(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False  # JSON keeps booleans apart from numbers; Python's bool is an int
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[name])


def _same(value: Any, option: Any) -> bool:
    if isinstance(value, bool) or isinstance(option, bool):
        return value is option
    return value == option and (type(value) is type(option) or isinstance(value, (int, float)))


def read_answer(text: str, spec: AnswerSpec) -> tuple[Any, str | None]:
    """The value a reply holds and the way it breaks the spec (None when it is valid).

    A structured reply is JSON in the wire shape; a plain-text reply (a provider without structured
    output) may be a bare word from the choices, or JSON inside a code fence."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1).strip()
    try:
        value = json.loads(stripped)
    except ValueError:
        value = _loose_value(stripped, spec)
        if value is None:
            return None, f"the reply is not valid JSON: {stripped[:200]!r}"
    if spec.wrapped and isinstance(value, dict) and set(value) == {WRAP_KEY}:
        value = value[WRAP_KEY]
    if spec.choices is not None and isinstance(value, str):
        value = _match_choice(value, spec.choices)
    return value, validate(value, spec.schema)


def _loose_value(text: str, spec: AnswerSpec) -> Any:
    """A value from a reply that is not JSON: a choice named in it, or the first JSON inside it."""
    if spec.choices is not None:
        matched = _match_choice(text, spec.choices)
        return matched if matched in spec.choices else text
    for opener in ("{", "["):
        start = text.find(opener)
        if start >= 0:
            try:
                value, _ = json.JSONDecoder().raw_decode(text[start:])
                return value
            except ValueError:
                continue
    if spec.schema.get("type") == "string":
        return text
    return None


def _match_choice(text: str, choices: tuple[Any, ...]) -> Any:
    """The choice a short reply names: exactly (ignoring case and punctuation), or the only choice
    that appears in it as a whole word. Otherwise the text itself, which then fails validation."""
    cleaned = text.strip().strip(".!\"'` ").lower()
    for choice in choices:
        if str(choice).lower() == cleaned:
            return choice
    named = [c for c in choices if re.search(rf"(?<!\w){re.escape(str(c).lower())}(?!\w)", cleaned)]
    return named[0] if len(named) == 1 else text


def retry_message(problem: str, spec: AnswerSpec) -> str:
    return f"That answer was not accepted: {problem}. {spec.instruction()}"


def as_text(value: Any) -> str:
    """How a typed answer is shown in a sub-call record."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
