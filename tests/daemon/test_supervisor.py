"""``causalscope watch --supervise``: the session's process dies and is started again.

The policy is tested on real child processes that die (SIGKILL, an exit status); the whole
daemon on a real session whose embedded Ray loses its control store (the GCS server killed with
SIGKILL): Ray ends the session's process, the supervisor starts it again, the new process
starts a Ray of its own, raises one ``daemon_restarted`` alert and finishes the session; every
exposure is done exactly once, and the supervisor itself never stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from causalscope.config.render import render_toml
from causalscope.daemon.supervisor import (
    RESTART_REASON,
    RestartPolicy,
    describe_exit,
    session_command,
    supervise,
)
from tests.daemon._faults import copy_movies, settings_for, simulate

_ROOT = Path(__file__).resolve().parents[2]


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_child_killed_again_and_again_is_restarted_until_the_hourly_limit(
    tmp_path: Path,
) -> None:
    log = tmp_path / "reasons.txt"
    code = (
        "import os, signal\n"
        f"reason = os.environ.get({RESTART_REASON!r}, '-')\n"
        f"with open({str(log)!r}, 'a') as f: f.write(reason + '\\n')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    said: list[str] = []
    status = supervise(_python(code), RestartPolicy(pause_s=0.05, per_hour=3), say=said.append)
    reasons = log.read_text().splitlines()
    assert len(reasons) == 4  # the first start and three restarts
    assert reasons[0] == "-"  # the first start has no reason; each restart has its own
    assert all("killed by SIGKILL" in reason for reason in reasons[1:])
    assert status == 1
    assert [line.count("starting it again") for line in said] == [1, 1, 1, 0]
    assert "0.05 s" in said[0] and "0.1 s" in said[1] and "0.2 s" in said[2]  # doubling
    assert "3 times in the last hour" in said[-1] and "resumes" in said[-1]


@pytest.mark.parametrize(("exit_code", "restarts"), [(0, 0), (2, 0), (130, 0), (3, 1)])
def test_only_a_failure_is_restarted(exit_code: int, restarts: int, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = (
        "import os, sys\n"
        f"first = not os.path.exists({str(marker)!r})\n"
        f"open({str(marker)!r}, 'a').write('x')\n"
        f"sys.exit({exit_code} if first else 0)\n"
    )
    said: list[str] = []
    status = supervise(_python(code), RestartPolicy(pause_s=0.05), say=said.append)
    assert len(marker.read_text()) == 1 + restarts
    assert status == (exit_code if restarts == 0 else 0)
    assert len(said) == restarts
    if restarts:
        assert "exit status 3" in said[0]


def test_sigterm_to_the_supervisor_stops_the_child_and_is_not_restarted(tmp_path: Path) -> None:
    started = tmp_path / "started"
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
        f"open({str(started)!r}, 'w').close()\n"
        "time.sleep(60)\n"
    )
    script = (
        "import sys\n"
        "from causalscope.daemon.supervisor import RestartPolicy, supervise\n"
        f"sys.exit(supervise({_python(code)!r}, RestartPolicy(pause_s=0.05)))\n"
    )
    parent = subprocess.Popen(_python(script), cwd=_ROOT, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not started.exists():
        assert time.monotonic() < deadline and parent.poll() is None, "the child did not start"
        time.sleep(0.05)
    parent.send_signal(signal.SIGTERM)
    output, _ = parent.communicate(timeout=60)
    assert parent.returncode == 0  # the child's own status, after a clean stop
    assert "starting it again" not in output


def test_exit_descriptions() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(1) == "exit status 1"


def _descendants(pid: int) -> dict[int, str]:
    """Every process under ``pid``: its command line."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        commands[int(entry.name)] = command
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in found:
                found[child] = commands[child]
                frontier.append(child)
    return found


def _wait_for(lines: list[str], text: str, child: subprocess.Popen[str], timeout_s: float) -> None:
    assert child.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if text in line:
            return
    child.kill()
    raise AssertionError(f"no line with {text!r}:\n" + "\n".join(lines[-60:]))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find Ray's GCS server")
def test_a_session_whose_ray_control_store_dies_is_started_again_and_finishes(
    tmp_path: Path,
) -> None:
    microscope = simulate(tmp_path / "microscope", n=3)
    watch = tmp_path / "watch"
    copy_movies(microscope, watch, movies=1)
    settings = settings_for(microscope, resilience={"daemon_restart_pause_s": 1.0})
    config = tmp_path / "settings.toml"
    config.write_text(render_toml(settings, comments=False))
    sessions = tmp_path / "sessions"
    argv = [
        "--config", str(config), "watch", str(watch), "--supervise", "--session", "gcs",
        "--sessions-dir", str(sessions), "--workers", "1", "--no-endpoints",
        "--until-idle", "20",
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": f"{_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "RAY_gcs_rpc_server_reconnect_timeout_s": "5",  # Ray ends the driver sooner
    }
    supervisor = subprocess.Popen(
        session_command(argv),
        cwd=_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        _wait_for(lines, "[   1]", supervisor, 240)  # the first exposure committed
        [gcs] = [pid for pid, cmd in _descendants(supervisor.pid).items() if "gcs_server" in cmd]
        os.kill(gcs, signal.SIGKILL)
        _wait_for(lines, "starting it again", supervisor, 180)
        copy_movies(microscope, watch)  # the rest arrive while the session is down
        output, _ = supervisor.communicate(timeout=300)
        lines.extend(output.splitlines())
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
    text = "\n".join(lines)
    assert supervisor.returncode == 0, text[-4000:]
    assert sum("starting it again" in line for line in lines) == 1, text[-4000:]
    database = sessions / "gcs" / "gcs.duckdb"
    with duckdb.connect(str(database), read_only=True) as db:
        states = db.execute("SELECT state, count(*) FROM exposures GROUP BY state").fetchall()
        results = db.execute("SELECT count(*) FROM results").fetchone()
        restarted = db.execute(
            "SELECT message FROM events WHERE kind = 'alert' AND message LIKE '%started again%'"
        ).fetchall()
    assert states == [("done", 3)], text[-4000:]
    assert results == (3,)  # each exposure exactly once
    assert len(restarted) == 1 and "the session process ended" in restarted[0][0]
