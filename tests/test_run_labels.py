"""``completion(..., labels=...)``: the caller's labels go into the log's metadata line as ``extra``,
redacted like everything else, and a label that cannot be written as JSON is refused up front."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlm_core import RLM, ConfigurationError, RLMLogger
from rlm_core.testing import ScriptedClient, repl


def test_labels_are_written_into_the_metadata_line(tmp_path: Path) -> None:
    root = ScriptedClient([repl("FINAL('done')")], model_name="root")
    rlm = RLM(backend=root, logger=RLMLogger(log_dir=tmp_path))
    result = rlm.completion("ctx", labels={"user": "ana", "token": "sk-test-not-a-real-key"})
    assert result.response == "done" and result.log_path
    metadata = json.loads(Path(result.log_path).read_text().splitlines()[0])
    assert metadata["type"] == "metadata"
    assert metadata["extra"]["user"] == "ana"
    assert "sk-test-not-a-real-key" not in json.dumps(metadata)  # a secret-named label is redacted


def test_labels_that_are_not_json_are_refused_before_the_run() -> None:
    root = ScriptedClient([repl("FINAL('done')")], model_name="root")
    rlm = RLM(backend=root)
    with pytest.raises(ConfigurationError, match="JSON values"):
        rlm.completion("ctx", labels={"when": object()})
    with pytest.raises(ConfigurationError, match="str keys"):
        rlm.completion("ctx", labels={1: "x"})  # type: ignore[dict-item]
    assert root.requests == []
