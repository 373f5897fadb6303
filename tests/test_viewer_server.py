"""The viewer's server without a browser: run summaries, byte-offset pages, the live tail, bad input, the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rlm_core.cli.app import main
from rlm_core.viewer import ViewerServer
from rlm_core.viewer.logfiles import read_page, summarize
from rlm_core.viewer.samples import write_rich_run, write_sample_logs
from rlm_core.viewer.server import running


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_logs(tmp_path_factory.mktemp("viewer-logs"))


@pytest.fixture
def server_for() -> Iterator[Callable[[Path], ViewerServer]]:
    with contextlib.ExitStack() as stack:
        yield lambda target: stack.enter_context(running(target))


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def get_json(url: str) -> Any:
    status, _, body = get(url)
    assert status == 200, body
    return json.loads(body)


def runs_by_question(server: ViewerServer) -> dict[str, dict[str, Any]]:
    runs = get_json(server.url + "api/runs")["runs"]
    return {run["metadata"]["root_prompt"]: run for run in runs if "metadata" in run}


def test_run_list_summarises_each_log_from_its_first_and_last_lines(log_dir: Path, server_for: Any) -> None:
    server = server_for(log_dir)
    runs = runs_by_question(server)
    rich, stopped = runs["How many?"], runs["Never ends?"]
    assert rich["status"] == "complete" and rich["result"]["response"] == "the answer is 42"
    assert rich["result"]["stop_reason"] == "final" and rich["result"]["iterations"] == 5
    assert rich["metadata"]["sub_models"] == ["child-model", "leaf-model"]
    assert rich["metadata"]["max_cost"] == 1.0 and "system_prompt" not in rich["metadata"]
    tiers = {row["tier"] for row in rich["result"]["usage_summary"]}
    assert tiers == {"root", "sub"}
    assert stopped["result"]["stop_reason"] == "max_iterations" and stopped["problems"] == []


def test_a_v3_log_serves_who_did_what(log_dir: Path, server_for: Any) -> None:
    server = server_for(log_dir)
    runs = runs_by_question(server)
    helped = runs["Who counted?"]
    assert helped["metadata"]["schema_version"] == 3
    assert helped["metadata"]["strategy"] == "word-count"
    assert helped["metadata"]["system_prompt_author"] == "engine"
    assert helped["result"]["stop_reason"] == "strategy"
    assert helped["result"]["answer_source"] == "strategy:word-count"
    assert runs["How many?"]["metadata"]["strategy"] is None
    assert runs["How many?"]["result"]["answer_source"] == "final"
    assert runs["Never ends?"]["result"]["answer_source"] == "last_turn_extract"

    status, _, body = get(f"{server.url}api/page?file={helped['file']}&offset=0")
    assert status == 200
    lines = [json.loads(line) for line in body.splitlines()]
    first, second = (line for line in lines if line["type"] == "iteration")
    assert [cell["author"] for cell in first["code_blocks"]] == ["strategy:word-count", "model"]
    assert [(a["strategy"], a["action"]) for a in first["actions"]] == [
        ("word-count", "run_code"),
        ("word-count", "tell"),
        ("word-count", "cap_output"),
        ("word-count", "ask_for_final"),
    ]
    assert first["actions"][0]["detail"]["why"] == "count the words first"
    assert first["actions"][3]["detail"]["reply"] == "Not sure yet: I have only seen three words."
    assert [m["author"] for m in first["new_messages"]] == ["engine", "strategy:word-count"]
    assert first["answer_source"] is None and first["notes"] == []
    assert [cell["author"] for cell in second["code_blocks"]] == ["model"]
    assert second["actions"] == [
        {
            "strategy": "word-count",
            "action": "accept_answer",
            "detail": {"text": "9 words", "why": "the model printed the count again but never called FINAL"},
        }
    ]
    assert second["answer_source"] == "strategy:word-count" and second["final_answer"] == "9 words"
    assert second["notes"] == ["the model ran a block it had run before, with the same output"]
    assert lines[-1]["type"] == "result" and lines[-1]["answer_source"] == "strategy:word-count"


def test_summary_reads_only_the_ends_of_a_big_log(tmp_path: Path) -> None:
    path = write_rich_run(tmp_path)
    lines = path.read_bytes().split(b"\n")
    # Pad the middle with 30 MB of iteration-sized lines: the summary must not depend on them.
    filler = lines[1] + b"\n"
    big = tmp_path / "big.jsonl"
    with big.open("wb") as handle:
        handle.write(lines[0] + b"\n")
        for _ in range((30 * 1024 * 1024) // len(filler)):
            handle.write(filler)
        handle.write(b"\n".join(lines[1:]))
    reads: list[int] = []
    real_open = Path.open

    def counting_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        handle = real_open(self, *args, **kwargs)
        if self == big:
            real_read = handle.read

            def read(size: int = -1) -> bytes:
                data: bytes = real_read(size)
                reads.append(len(data))
                return data

            handle.read = read
        return handle

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "open", counting_open)
        summary = summarize(big)
    assert summary["status"] == "complete" and summary["result"]["iterations"] == 5
    assert sum(reads) < 2 * 1024 * 1024, "the run list must not read a whole log"


def test_pages_split_a_log_at_line_ends_and_cover_it_exactly(log_dir: Path, server_for: Any) -> None:
    server = server_for(log_dir)
    name = runs_by_question(server)["How many?"]["file"]
    whole = (log_dir / name).read_bytes()
    offset, pieces = 0, []
    while offset < len(whole):
        status, headers, body = get(f"{server.url}api/page?file={name}&offset={offset}&max=1024")
        assert status == 200
        complete = int(headers["X-Complete-Bytes"])
        assert int(headers["X-Offset"]) == offset and int(headers["X-Size"]) == len(whole)
        assert body[:complete].endswith(b"\n") and complete > 0
        pieces.append(body[:complete])
        offset = int(headers["X-Next-Offset"])
    assert b"".join(pieces) == whole
    assert len(pieces) > 3  # lines longer than a 1 KB page still came whole, one per page


def test_a_cut_off_last_line_comes_back_as_the_partial_tail(tmp_path: Path) -> None:
    path = write_rich_run(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    page = read_page(path, 0, 16 * 1024 * 1024)
    assert page.next_offset == data[: len(data) - 40].rfind(b"\n") + 1
    assert page.partial and not page.partial.endswith(b"\n")
    assert summarize(path)["status"] == "unfinished"


def test_the_tail_answers_as_soon_as_the_log_grows(tmp_path: Path, server_for: Any) -> None:
    source = write_rich_run(tmp_path / "source")
    lines = source.read_bytes().splitlines(keepends=True)
    live = tmp_path / "live"
    live.mkdir()
    target = live / "growing.jsonl"
    target.write_bytes(b"".join(lines[:2]))
    server = server_for(live)
    offset = target.stat().st_size

    def append_later() -> None:
        time.sleep(0.3)
        with target.open("ab") as handle:
            handle.write(lines[2])

    writer = threading.Thread(target=append_later)
    writer.start()
    started = time.monotonic()
    status, headers, body = get(f"{server.url}api/tail?file=growing.jsonl&offset={offset}&wait=20")
    waited = time.monotonic() - started
    writer.join()
    assert status == 200 and body == lines[2]
    assert int(headers["X-Next-Offset"]) == offset + len(lines[2])
    assert waited < 20, "the long poll returned because the file grew, not because it gave up"
    # Nothing new: the tail gives up after its wait with an empty page, for the page to ask again.
    status, headers, body = get(
        f"{server.url}api/tail?file=growing.jsonl&offset={target.stat().st_size}&wait=0.2"
    )
    assert status == 200 and body == b"" and headers["X-Complete-Bytes"] == "0"


def test_bad_input_is_reported_not_fatal(tmp_path: Path, server_for: Any) -> None:
    real = write_rich_run(tmp_path / "src")
    first, *rest = real.read_text().splitlines()
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "foreign.jsonl").write_text('{"hello": "world"}\n')
    newer = json.loads(first) | {"schema_version": 99}
    (logs / "newer.jsonl").write_text(json.dumps(newer) + "\n" + "\n".join(rest) + "\n")
    (logs / "empty.jsonl").write_text("")
    (logs / "notes.txt").write_text("not a log")
    server = server_for(logs)
    runs = {run["file"]: run for run in get_json(server.url + "api/runs")["runs"]}
    assert set(runs) == {"foreign.jsonl", "newer.jsonl", "empty.jsonl"}
    assert runs["foreign.jsonl"]["status"] == "foreign"
    assert "not an rlm-core metadata line" in runs["foreign.jsonl"]["problems"][0]
    assert runs["empty.jsonl"]["status"] == "empty"
    assert runs["newer.jsonl"]["status"] == "complete"
    assert "schema 99" in runs["newer.jsonl"]["problems"][0]


def test_only_listed_logs_are_served(log_dir: Path, tmp_path: Path, server_for: Any) -> None:
    (log_dir.parent / "secret.jsonl").write_text('{"type": "metadata"}\n')
    server = server_for(log_dir)
    for name in ("../secret.jsonl", "%2Fetc%2Fpasswd", "missing.jsonl", ""):
        status, _, body = get(f"{server.url}api/page?file={name}&offset=0")
        assert status == 404 and "pick one from the run list" in json.loads(body)["error"]
    status, _, body = get(f"{server.url}api/page?file=x&offset=abc")
    assert status in (400, 404)
    assert get(server.url + "api/nothing")[0] == 404
    assert server.url.startswith("http://127.0.0.1:")


def test_requests_for_another_host_name_are_refused(log_dir: Path, server_for: Any) -> None:
    server = server_for(log_dir)
    port = server.server_address[1]
    for host, expected in (
        (f"rebound.example:{port}", 403),
        (f"localhost:{port}", 200),
        (f"127.0.0.1:{port}", 200),
    ):
        request = urllib.request.Request(server.url + "api/runs", headers={"Host": host})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert status == expected, host


def test_the_page_and_its_files_come_from_the_package(log_dir: Path, server_for: Any) -> None:
    server = server_for(log_dir)
    status, headers, body = get(server.url)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'src="static/viewer.js"' in body and b"http" not in body.split(b"<body>")[0].replace(
        b'"data:,"', b""
    )
    for name, kind in (("viewer.js", "text/javascript"), ("viewer.css", "text/css")):
        status, headers, body = get(server.url + "static/" + name)
        assert status == 200 and headers["Content-Type"].startswith(kind) and len(body) > 1000


def test_an_empty_directory_lists_no_runs_and_says_how_to_make_some(tmp_path: Path, server_for: Any) -> None:
    server = server_for(tmp_path)
    data = get_json(server.url + "api/runs")
    assert data["runs"] == [] and "RLMLogger(log_dir=...)" in data["help"] and "--log-dir" in data["help"]


def test_export_writes_one_self_contained_file(log_dir: Path, tmp_path: Path, capsys: Any) -> None:
    log = next(p for p in log_dir.iterdir() if "How many?" in p.read_text())
    out = tmp_path / "run.html"
    assert main(["view", str(log), "--export", str(out)]) == 0
    page = out.read_text()
    assert 'id="rlm-embedded"' in page and "<style>" in page and "static/viewer" not in page
    assert page.count("</script>") == 2  # data and code, nothing in the log closed a tag early
    assert str(out) in capsys.readouterr().out


def test_view_usage_errors(tmp_path: Path, capsys: Any) -> None:
    assert main(["view", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["view", str(tmp_path), "--export", str(tmp_path / "x.html")]) == 2
    assert "no .jsonl logs" in capsys.readouterr().err


def test_rlm_view_prints_its_address_serves_and_stops_on_ctrl_c(log_dir: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "rlm_core", "view", str(log_dir), "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "http://127.0.0.1:" in line, line
        url = line[line.index("http://") :].split()[0]
        assert len(get_json(url + "api/runs")["runs"]) == 3
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert process.stderr is not None and "stopped" in process.stderr.read()
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.parametrize(("ci", "outcome"), [("true", "error"), ("", "skipped")])
def test_browser_tests_fail_in_ci_and_skip_elsewhere_without_chromium(ci: str, outcome: str) -> None:
    env = {**os.environ, "CI": ci, "RLM_VIEWER_CHROMIUM": "/nonexistent/chromium"}
    browser_tests = str(Path(__file__).with_name("test_viewer_browser.py"))
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            browser_tests,
            "-q",
            "-rfs",
            "-p",
            "no:cacheprovider",
            "-k",
            "empty_directory",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"1 {outcome}" in ran.stdout, ran.stdout  # a fixture failure counts as an error, not a pass
    assert (ran.returncode != 0) == (outcome == "error")
    assert "no Chromium at /nonexistent/chromium" in ran.stdout
