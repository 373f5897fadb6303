"""Scored sub-calls: ``llm_query(prompt, choices=[...], scores=True)`` returns, for each choice, the
log-probability the sub-model gives it as the first token of its reply, instead of one answer.

A model's single answer hides how sure it was, and small models lean towards one label whatever
the item; scores let code compare items, set its own threshold or correct that lean (the
small-model strategy's ``ask_each`` does, by batch calibration). Scores come from the provider's
token log-probabilities (Chat Completions ``logprobs``/``top_logprobs``: OpenAI, llama.cpp, vLLM and
most OpenAI-compatible servers); a client without them makes the call fail with a clear error.

Only the first token is scored, so choices must start differently: ``"yes"``/``"no"`` or
``"spam"``/``"ham"`` work, ``"yes"``/``"yesterday"`` cannot be told apart there and is refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rlm_core.engine.typed_answers import AnswerSpec, TypedAnswerError

__all__ = ["ALTERNATIVES", "check_scorable", "choice_scores", "no_scores_error", "scores_or_error"]

# How many alternatives the provider is asked for: the most the OpenAI API gives.
ALTERNATIVES = 20

_QUOTES = "\"'`"


def _normal(text: str) -> str:
    return text.strip().strip(_QUOTES).strip().lower()


def check_scorable(spec: AnswerSpec | None) -> tuple[str, ...]:
    """The choices of a scored call, or a TypedAnswerError saying what to change."""
    if spec is None or spec.choices is None:
        raise TypedAnswerError("scores=True needs choices=[...]: the scores are one per choice.")
    choices = spec.choices
    if not all(isinstance(c, str) and _normal(c) for c in choices):
        raise TypedAnswerError(f"scores=True needs non-empty string choices, got {list(choices)!r}.")
    for choice in choices:
        for other in choices:
            if other is not choice and _normal(other).startswith(_normal(choice)):
                raise TypedAnswerError(
                    f"scores=True scores the first token of the reply, so {choice!r} and {other!r} "
                    "cannot be told apart (one begins the other); use choices that start differently."
                )
    return tuple(str(c) for c in choices)


def _begins(token: str, choice: str) -> bool:
    """The token could start the reply ``choice`` (or is the whole choice, punctuation after it)."""
    if not token:
        return False
    if choice.startswith(token):
        return True
    return token.startswith(choice) and not token[len(choice)].isalnum()


def choice_scores(
    alternatives: Sequence[tuple[str, float]], choices: Sequence[str]
) -> dict[str, float | None]:
    """Each choice's log-probability as the reply's first token: the summed probability of the
    alternatives that begin it (case, spaces and quotes aside) and begin no other choice. None for a
    choice none of the alternatives begins: its probability is below theirs, not known."""
    normal = {choice: _normal(choice) for choice in choices}
    found: dict[str, list[float]] = {}
    for token, logprob in alternatives:
        cleaned = _normal(token)
        owners = [choice for choice in choices if _begins(cleaned, normal[choice])]
        if len(owners) == 1:
            found.setdefault(owners[0], []).append(logprob)
    return {choice: _logsumexp(found[choice]) if choice in found else None for choice in choices}


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def no_scores_error(model: str) -> TypedAnswerError:
    """The error for a scored call to a client that does not give token log-probabilities."""
    return TypedAnswerError(
        f"{model}'s client gives no token log-probabilities, so scores=True cannot be answered; use "
        "llm_query(prompt, choices=[...]) for one answer without scores, or a model whose API gives "
        "logprobs (OpenAI and OpenAI-compatible servers such as llama.cpp do)."
    )


def scores_or_error(alternatives: Any, choices: Sequence[str]) -> dict[str, float | None]:
    """The scores of a reply, or a TypedAnswerError when the provider gave no alternatives."""
    if not alternatives:
        raise TypedAnswerError(
            "the sub-model's provider returned no token log-probabilities, so scores=True cannot be "
            "answered; use llm_query(prompt, choices=[...]) for one answer without scores, or a model "
            "whose API gives logprobs (OpenAI-compatible servers such as llama.cpp do)."
        )
    return choice_scores(alternatives, choices)
