"""``causalscope serve`` and ``watch --serve``: refusals before anything starts, the SQL guard,
and the command end to end in its own process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from causalscope.daemon.cli import main
from causalscope.daemon.client.errors import QueryError
from causalscope.daemon.serve import check_bind
from causalscope.daemon.serve.sql_guard import MAX_QUERY_CHARS, guard_sql
from causalscope.models.errors import InputError

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "scope-pc.example.org"])
def test_a_public_bind_needs_a_token(host: str) -> None:
    with pytest.raises(InputError, match=f"binding '{host}'"):
        check_bind(host, None)
    check_bind(host, "a-long-enough-token")


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_needs_no_token(host: str) -> None:
    check_bind(host, None)


def test_refusals_come_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", str(tmp_path), "--host", "0.0.0.0"]) == 2
    assert "API token required" in capsys.readouterr().err
    short = tmp_path / "token"
    short.write_text("abc\n")
    assert main(["serve", str(tmp_path), "--host", "0.0.0.0", "--token-file", str(short)]) == 2
    assert "has 3 characters" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "nowhere")]) == 2
    assert "nowhere is not a folder" in capsys.readouterr().err
    args = ["watch", str(tmp_path), "--serve", "--no-endpoints"]
    assert main(args) == 2
    assert "--serve needs the endpoints" in capsys.readouterr().err
    assert main(["watch", str(tmp_path), "--serve", "--host", "0.0.0.0"]) == 2
    assert "API token required" in capsys.readouterr().err


def test_the_sql_guard_refuses_by_statement_type() -> None:
    assert guard_sql("SELECT 1", 10).max_rows == 10
    assert guard_sql("DESCRIBE exposures", 10).sql == "DESCRIBE exposures"
    for sql, reason in {
        "INSERT INTO labels VALUES (1)": "INSERT",
        "UPDATE exposures SET state = 'done'": "UPDATE",
        "ATTACH '/tmp/x.duckdb'": "ATTACH",
        "COPY (SELECT 1) TO '/tmp/x.csv'": "COPY",
        "PRAGMA enable_profiling": "PRAGMA",
        "SELECT 1; SELECT 2": "2 statements",
        "SELEC 1": "cannot parse",
        "   ": "empty",
        "SELECT " + "1+" * MAX_QUERY_CHARS + "1": "characters",
    }.items():
        with pytest.raises(QueryError, match=reason):
            guard_sql(sql, 10)
    for limit in (0, -1, 10_001):
        with pytest.raises(QueryError, match="limit must be from 1 to 10000"):
            guard_sql("SELECT 1", limit)


def test_recent_values_are_computed_once_per_interval() -> None:
    from causalscope.daemon.serve.cache import Recent

    recent: Recent[int] = Recent(max_age_s=60.0)
    calls: list[int] = []

    def compute() -> int:
        time.sleep(0.1)  # the others ask meanwhile
        calls.append(1)
        return len(calls)

    got: list[int] = []
    threads = [
        threading.Thread(target=lambda: got.append(recent.get("s", compute))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == [1] * 8 and recent.computed == 1
    assert recent.get("other", compute) == 2  # keys apart
    stale: Recent[int] = Recent(max_age_s=0.0)
    assert [stale.get("s", compute), stale.get("s", compute)] == [3, 4]


@pytest.mark.slow
def test_the_serve_command_answers_until_interrupted(tmp_path: Path) -> None:
    from causalscope.daemon.bench.tui import make_session

    (tmp_path / "s1").mkdir()
    make_session(tmp_path / "s1" / "s1.duckdb", 5)
    port = _free_port()
    # faulthandler: a command that does not exit is made to print where each thread waits
    env = {**os.environ, "RAY_ADDRESS": "local", "PYTHONPATH": str(REPO), "PYTHONFAULTHANDLER": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "causalscope.daemon.cli",
            "serve",
            str(tmp_path),
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # started with Ctrl-C ignored, as a script's background job is (and as a process
        # inherits it): the command must still stop on it
        preexec_fn=_ignore_ctrl_c,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or ()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        listed = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/sessions", timeout=5)
            except requests.RequestException:  # not listening yet, or too busy starting
                answer = None
            if answer is not None and answer.status_code == 200:  # not Serve's "starting"
                listed = answer.json()
                break
            time.sleep(1)
        assert listed is not None, "the API did not answer within 120 s"
        assert [(s["id"], s["live"], s["counts"]["done"]) for s in listed] == [("s1", False, 5)]
        while not any("causalscope serve:" in line for line in lines):
            assert time.monotonic() < deadline, "the command did not say where it serves"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGINT)
        try:  # the command gives Serve and Ray 60 s, then leaves
            process.wait(timeout=150)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)  # its threads' stacks, then the end
            process.wait(timeout=60)
            reader.join(timeout=10)
            pytest.fail("no exit within 150 s of Ctrl-C:\n" + "".join(lines)[-8000:])
        reader.join(timeout=10)
    output = "".join(lines)
    assert process.returncode == 130, output
    assert f"at http://127.0.0.1:{port}" in output


def _ignore_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ctrl_c_gives_serve_and_ray_a_bounded_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Serve that never finishes shutting down is given up on after the bound (the command
    then leaves at once); one that does is waited for."""
    import threading

    import ray

    import causalscope.daemon.serve as serve_api
    from causalscope.daemon.commands import serve as serve_command

    # the shutdown thread left behind must neither outlive this test nor shut down the Ray
    # of the tests after it in this process (it once did, 30 s later, in the middle of one)
    release = threading.Event()
    monkeypatch.setattr(serve_api, "stop_api", lambda: release.wait(30))
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    started = time.monotonic()
    try:
        assert serve_command._close_within(0.5) is False
        assert time.monotonic() - started < 5
    finally:
        release.set()
        for thread in threading.enumerate():
            if thread.name == "serve-shutdown":
                thread.join(10)
    monkeypatch.setattr(serve_api, "stop_api", lambda: None)
    assert serve_command._close_within(5) is True
