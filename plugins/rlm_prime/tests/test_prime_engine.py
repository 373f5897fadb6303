"""The prime environment under the real engine: `RLM(environment="prime")`, multi-turn, sub-calls."""

from __future__ import annotations

import asyncio

from prime_fakes import FakePrimeCloud

from rlm_core import RLM
from rlm_core.testing import ScriptedClient, repl


def test_persistent_turns_in_one_sandbox(prime_cloud: FakePrimeCloud, workdir: str) -> None:
    root = ScriptedClient(
        [
            repl("seen = [context]\nprint(llm_query('name the colour'))"),
            repl("FINAL(seen[0])"),
            repl("seen.append(context)\nFINAL('+'.join(seen) + ':' + str(len(history_0)))"),
        ]
    )
    sub = ScriptedClient(["teal"], model_name="cheap")
    rlm = RLM(
        backend=root,
        other_backends=[sub],
        environment="prime",
        environment_kwargs={"workdir": workdir, "timeout": 30},
        persistent=True,
    )

    async def turns() -> str:
        # One event loop for every turn: the stream to the sandbox lives on the loop that opened it.
        async with rlm:
            assert (await rlm.acompletion("first")).response == "first"
            second = await rlm.acompletion("second")
            assert len(prime_cloud.live()) == 1  # one sandbox for every turn
            return second.response

    response = asyncio.run(turns())
    assert response.startswith("first+second:"), response
    assert "teal" in root.requests[1].messages[-1].content  # the sub-call's answer came back
    assert prime_cloud.live() == []  # closing the RLM ended the sandbox
