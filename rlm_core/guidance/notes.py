"""The core's plain notes to the model: facts about what happened, never a judgement of its answer.

Without a strategy these are all the help a run gives: the same block run again with the same
output, a sub-call prompt too long for the sub-model, a reply with neither code nor a finish. The
engine still runs every block the model sends and takes every answer it gives.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import attrs

from rlm_core.guidance import prompts
from rlm_core.records import CodeBlockRecord

# How llama.cpp, vLLM, OpenAI and Anthropic word a prompt that does not fit the model's window.
_PROMPT_TOO_LONG = re.compile(
    r"(?is)ProviderError.*(exceeds the available context|context length|context window|too many tokens"
    r"|prompt is too long|maximum context)"
)


@attrs.define(frozen=True)
class Note:
    """``log`` goes into the iteration's notes, ``message`` to the model."""

    log: str
    message: str


class PlainNotes:
    """What one run remembers to state facts: the output each block printed last time."""

    def __init__(self) -> None:
        self._outputs: dict[str, str] = {}

    def after_cells(
        self, cells: Sequence[CodeBlockRecord], sub_window_chars: Callable[[], int | None]
    ) -> list[Note]:
        """Notes on the model's cells of a turn. ``sub_window_chars()`` is asked only when a
        sub-call prompt was too long."""
        notes: list[Note] = []
        repeated = False
        for cell in cells:
            key = cell.code.strip()
            output = cell_output(cell)
            repeated = repeated or self._outputs.get(key) == output
            self._outputs[key] = output
        if repeated:
            notes.append(
                Note("the model ran a block it had run before, with the same output", prompts.REPEAT_NOTE)
            )
        if any(_too_long(cell) for cell in cells):
            window = sub_window_chars()
            # Room for the question and the answer: 60% of the window.
            chars = int(window * 0.6) if window else None
            notes.append(
                Note(
                    "an llm_query prompt exceeded the sub-model's window", prompts.prompt_too_long_note(chars)
                )
            )
        return notes

    @staticmethod
    def no_code(ran_code: bool) -> Note:
        return Note(
            "reply had no code and no FINAL(...)",
            prompts.NO_CODE_NOTE if ran_code else prompts.NO_CODE_YET_NOTE,
        )


def cell_output(cell: CodeBlockRecord) -> str:
    """What a cell printed, with its error: the text two runs of a block are compared on."""
    return cell.stdout + (cell.error or "")


def _too_long(cell: CodeBlockRecord) -> bool:
    return bool(
        _PROMPT_TOO_LONG.search(cell.error or "")
        or any(_PROMPT_TOO_LONG.search(call.error or "") for call in cell.subcalls)
    )
