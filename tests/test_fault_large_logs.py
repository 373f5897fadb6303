"""Large sub-call prompts and outputs reach the log as a preview plus size and hash, never whole."""

from __future__ import annotations

import hashlib
from pathlib import Path

from rlm_core import RLM, RLMLogger
from rlm_core.loggers.jsonl import read_elided, read_trajectory
from rlm_core.testing import LoopbackLLMServer, ScriptedClient

REFUSED_THREE_TIMES = """```repl
for attempt in range(3):
    try:
        llm_query(context)
    except Exception as exc:
        print(type(exc).__name__)
print('big output ' * 5000)
```"""


def run_with_big_context(tmp_path: Path, **logger_kwargs: object) -> tuple[Path, str]:
    context = "The quick brown fox. " * 250_000  # 5.25 MB
    logger = RLMLogger(tmp_path, **logger_kwargs)  # type: ignore[arg-type]
    with LoopbackLLMServer() as server:
        rlm = RLM(
            backend=ScriptedClient([REFUSED_THREE_TIMES, "FINAL(done)"]),
            other_backends=["openai"],
            other_backend_kwargs=[{"model_name": "sub", "base_url": server.base_url, "api_key": "k"}],
            max_sub_tokens=100_000,
            logger=logger,
        )
        result = rlm.completion(context)
        assert server.requests == []  # refused before sending: the prompt cannot fit the budget
    assert result.response == "done"
    return Path(result.log_path or ""), context


def test_three_refused_calls_on_a_big_context_write_a_small_log(tmp_path: Path) -> None:
    path, context = run_with_big_context(tmp_path)
    assert path.stat().st_size < 100_000, f"log is {path.stat().st_size:,} bytes"
    trajectory = read_trajectory(path)
    assert trajectory.complete and not trajectory.problems
    subcalls = trajectory.iterations[0].code_blocks[0].subcalls
    assert len(subcalls) == 3 and all(call.error for call in subcalls)
    digest = hashlib.sha256(context.encode()).hexdigest()
    assert all(f"sha256 {digest}" in call.prompt for call in subcalls)
    assert all(call.prompt.startswith("The quick brown fox.") for call in subcalls)
    sizes = {e.chars for e in trajectory.elided if e.path.endswith("prompt")}
    assert sizes == {len(context)}
    assert not list(tmp_path.glob("*.d"))  # side files are opt-in


def test_side_files_keep_each_large_text_once_and_read_back(tmp_path: Path) -> None:
    path, context = run_with_big_context(tmp_path, side_files=True)
    trajectory = read_trajectory(path)
    prompts = [e for e in trajectory.elided if e.path.endswith("prompt")]
    assert len(prompts) == 3 and len({e.file for e in prompts}) == 1
    assert read_elided(trajectory, prompts[0]) == context
    assert len(list(path.with_suffix(".d").iterdir())) == len({e.sha256 for e in trajectory.elided})


def test_small_values_stay_whole(tmp_path: Path) -> None:
    logger = RLMLogger(tmp_path)
    result = RLM(
        backend=ScriptedClient(["```repl\nprint('short')\n```", "FINAL(ok)"]), logger=logger
    ).completion("a short context")
    trajectory = read_trajectory(result.log_path or "")
    assert trajectory.elided == []
    assert trajectory.iterations[0].code_blocks[0].stdout.strip() == "short"
