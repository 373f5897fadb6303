"""rlm-bwrap as users meet it: discovered through its entry point, configured by environment_kwargs."""

from __future__ import annotations

import asyncio

import pytest
from rlm_bwrap import BwrapTransport, make_environment

from rlm_core import RLM
from rlm_core.errors import ConfigurationError, SandboxError
from rlm_core.plugins import get_registry
from rlm_core.testing import ScriptedClient


@pytest.mark.usefixtures("require_bwrap", "discoverable")
def test_an_rlm_run_in_the_bwrap_environment_found_by_name() -> None:
    info = next(i for i in get_registry().plugin_infos() if i.name == "bwrap")
    assert info.distribution == "rlm-bwrap" and info.registered == {"environments": ["bwrap"]}
    root = ScriptedClient(
        ["```repl\nimport os\nFINAL(f'{len(context)} chars, pid {os.getpid()}, ' + llm_query('sub?'))\n```"]
    )
    sub = ScriptedClient(["sub answer"], model_name="sub")
    with RLM(backend=root, other_backends=[sub], environment="bwrap") as rlm:
        result = rlm.completion("a context of 31 characters long")
    assert result.response == "31 chars, pid 2, sub answer"  # pid 2: bwrap's init is pid 1 in there
    assert len(sub.requests) == 1


def test_unknown_settings_are_named() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown environment_kwargs \['image'\].*hidden_paths"):
        make_environment(image="python:3.11")


def test_settings_reach_the_transport_and_the_sandbox_environment() -> None:
    environment = make_environment(python="/usr/bin/python3", env={"A": "1"}, timeout=7, kill_grace=1.5)
    assert isinstance(environment.transport, BwrapTransport)
    assert (environment.transport.python, environment.transport.env) == ("/usr/bin/python3", {"A": "1"})
    assert (environment.timeout, environment.kill_grace) == (7, 1.5)


def test_a_missing_bwrap_says_how_to_install_it() -> None:
    transport = BwrapTransport(bwrap="/nonexistent/bwrap")
    with pytest.raises(SandboxError, match="apt-get install bubblewrap"):
        asyncio.run(transport.start())


@pytest.mark.usefixtures("require_bwrap")
def test_put_file_refuses_paths_outside_the_workdir() -> None:
    async def main() -> None:
        transport = BwrapTransport()
        await transport.start()
        try:
            with pytest.raises(SandboxError, match="not directly inside the workdir"):
                await transport.put_file(f"{transport.workdir}/../escaped.py", b"x")
            await transport.put_file(f"{transport.workdir}/runtime.py", b"print(1)")
        finally:
            await transport.close()

    asyncio.run(main())
