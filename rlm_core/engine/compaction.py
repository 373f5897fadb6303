"""Keeping the root conversation inside the model's window: older turns move into the REPL.

When the conversation nears ``threshold`` of the window, everything between the opening messages and
the last few turns is replaced by one note; the removed messages go into the REPL variable
``history_<turn>``, so nothing is lost and the model can still read them with code.
"""

from __future__ import annotations

from rlm_core.engine.tokens import TYPICAL_BYTES_PER_TOKEN, message_bytes
from rlm_core.environments.base import Environment
from rlm_core.types import Message

KEEP_TAIL = 4  # messages kept verbatim when the root conversation is compacted
MIN_MESSAGES = 6


class Compactor:
    """One run's compaction state: the transcript moved out so far."""

    def __init__(self, environment: Environment, turn: int, threshold: float) -> None:
        self.environment = environment
        self.turn = turn
        self.threshold = threshold
        self.compactions = 0
        self.transcript: list[dict[str, str]] = []

    def needed(self, messages: list[Message], window: int | None) -> bool:
        if not window or len(messages) < MIN_MESSAGES:
            return False
        return message_bytes(messages) / TYPICAL_BYTES_PER_TOKEN >= window * self.threshold

    async def compact(self, messages: list[Message]) -> list[Message]:
        """The conversation with its middle moved into ``history_<turn>``."""
        self.compactions += 1
        self.transcript.extend(
            {"role": m.role, "content": m.content, "author": m.author} for m in messages[2:-KEEP_TAIL]
        )
        # The current turn's transcript lives where later turns will find it too: history_<turn>.
        await self.environment.load_history(self.turn, self.transcript)
        note = Message(
            "user",
            f"[{len(self.transcript)} earlier messages were removed to fit the model's window. They are "
            f"in the REPL variable `history_{self.turn}` (a list of {{role, content}} dicts); your "
            "variables are all still there. Continue from the messages below.]",
            author="engine",
        )
        return [*messages[:2], note, *messages[-KEEP_TAIL:]]
