"""Repair guards of the root loop: notice a reply that went wrong in a known way and say what to do.

Each guard answers one failure measured with small models (an answer before any code ran, prose
instead of FINAL, the same block run again and again, one part of a two-part answer, a sub-call prompt
too long for its model) and fires only on that failure, so capable models are unaffected. Models
recognised as small also get a first search of the context, the question restated each turn, and
shorter turns. ``small_model_guards=False`` turns everything here off.
"""

from __future__ import annotations

import re
from typing import Any

from rlm_core.guidance import first_search, prompts
from rlm_core.records import IterationRecord

SMALL_MAX_OUTPUT_CHARS = 4_000  # of REPL output shown to a small model per block
SMALL_ROOT_MAX_TOKENS = 400  # one code block or a FINAL line; small models ramble past it
# How llama.cpp, vLLM, OpenAI and Anthropic word a prompt that does not fit the model's window.
_PROMPT_TOO_LONG = re.compile(
    r"(?is)ProviderError.*(exceeds the available context|context length|context window|too many tokens"
    r"|prompt is too long|maximum context)"
)
_SECOND_QUESTION = re.compile(r"(?i)(\band\b|,|;)\s+(what|which|who|whom|whose|when|where|how|why)\b")
_ANSWER_SEPARATOR = re.compile(r"(?i)\band\b|[,;]|\bwith\b")


def answers_only_one_part(query: str | None, answer: str) -> bool:
    """The question asks two things ("who ..., and what ...?") but the answer is one short phrase."""
    if not query or not _SECOND_QUESTION.search(query):
        return False
    return len(answer.split()) <= 4 and not _ANSWER_SEPARATOR.search(answer)


class ReplyGuards:
    """The guards' memory for one run. ``enabled`` is ``small_model_guards``; ``small`` says the root
    model was recognised as small (or ``prompt_style="small"``)."""

    def __init__(self, *, enabled: bool, small: bool, root_prompt: str | None, context: Any) -> None:
        self.enabled = enabled
        self.small = enabled and small
        self.root_prompt = root_prompt
        self.context = context
        self.ran_code = False
        self._asked: set[str] = set()  # one-shot guards already used
        self._outputs: dict[str, str] = {}  # code -> the output of its last run
        self._stuck: set[str] = set()  # code whose last two runs printed the same output

    # -- before a turn -------------------------------------------------------------------------

    def first_search_code(self) -> str | None:
        """Search code for the question's key words (text contexts with searchable words only)."""
        terms = first_search.key_terms(self.root_prompt or "")
        if not terms or not isinstance(self.context, str):
            return None
        counting = first_search.asks_for_a_count(self.root_prompt or "")
        return first_search.search_code(terms, self.context, counting)

    def root_max_tokens(self, client_max: Any) -> int | None:
        if not self.small:
            return None
        if isinstance(client_max, int) and client_max > 0:
            return min(SMALL_ROOT_MAX_TOKENS, client_max)
        return SMALL_ROOT_MAX_TOKENS

    def output_limit(self, limit: int) -> int:
        # A small model's window holds a few thousand tokens; long output also reads slowly on CPU.
        return min(limit, SMALL_MAX_OUTPUT_CHARS) if self.small else limit

    def turn_prompt(self, first: bool = False) -> str:
        # Small models lose track of the question after a few turns of output: restate it.
        return prompts.small_turn_reminder(self.root_prompt, first) if self.small else prompts.CONTINUE_PROMPT

    # -- on a reply ----------------------------------------------------------------------------

    def stuck_on(self, code: str, record: IterationRecord, feedback: list[str]) -> bool:
        """The model sent a block whose last two runs printed the same thing: do not run it again."""
        if not self.enabled or code.strip() not in self._stuck:
            return False
        record.notes.append("identical block sent again after two identical outputs: not run")
        feedback.append(prompts.repeat_block_note(escalate=True, search=self.first_search_code()))
        return True

    def check_final(
        self, final: str, replied_with_code: bool, record: IterationRecord, feedback: list[str]
    ) -> str | None:
        """The final answer, or None when a guard sends the model back to work."""
        if self.enabled and not self.ran_code and not replied_with_code and self._once("guess"):
            # Answering before looking at the context is almost always a made-up answer.
            record.notes.append("final answer before any code ran: asked to check first")
            feedback.append(prompts.GUESS_NOTE)
            return None
        if self.small and answers_only_one_part(self.root_prompt, final) and self._once("all-parts"):
            # Small models answer the first half of a two-part question and stop.
            record.notes.append("a two-part question got a one-part answer: asked for every part")
            feedback.append(prompts.all_parts_note(final, self.root_prompt))
            return None
        return final

    def no_code_reply(self, prose: str, record: IterationRecord, feedback: list[str]) -> str | None:
        """A reply with neither code nor FINAL(...): the second such clear reply is taken as the answer."""
        if self.ran_code and self.enabled and prose and not self._once("prose"):
            record.notes.append("accepted a plain-text reply as the final answer")
            return prose
        record.notes.append("reply had no code and no FINAL(...)")
        feedback.append(prompts.NO_CODE_NOTE if self.ran_code else prompts.NO_CODE_YET_NOTE)
        return None

    def after_blocks(self, record: IterationRecord, sub_window: Any, feedback: list[str]) -> None:
        """Notes on the blocks that ran: repeats and sub-call prompts too long for their model."""
        repeated = False
        for block in record.code_blocks:
            key = block.code.strip()
            output = block.stdout + (block.error or "")
            if self.enabled and self._outputs.get(key) == output:
                repeated = True
                self._stuck.add(key)
            else:
                self._stuck.clear()  # other code ran: what was stuck before may print something new
            self._outputs[key] = output
        if repeated:
            record.notes.append("repeated an identical block")
            feedback.append(prompts.repeat_block_note(escalate=False))
        if self.enabled and self._prompt_too_long(record):
            record.notes.append("an llm_query prompt exceeded the sub-model's window")
            # About three characters per token, and room for the question and the answer.
            chars = int(sub_window * 3 * 0.7) if isinstance(sub_window, int) and sub_window > 0 else None
            feedback.append(prompts.prompt_too_long_note(chars))

    def extract_suffix(self) -> str:
        return f" The question was: {self.root_prompt}" if self.root_prompt and self.small else ""

    # -- helpers -------------------------------------------------------------------------------

    def _once(self, name: str) -> bool:
        """True the first time a one-shot guard asks."""
        if name in self._asked:
            return False
        self._asked.add(name)
        return True

    @staticmethod
    def _prompt_too_long(record: IterationRecord) -> bool:
        return any(
            _PROMPT_TOO_LONG.search(block.error or "")
            or any(_PROMPT_TOO_LONG.search(call.error or "") for call in block.subcalls)
            for block in record.code_blocks
        )
