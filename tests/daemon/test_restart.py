"""Exactly once across a crash: ``kill -9`` of the daemon while exposures are in flight, then a
restart on the same folder. Real processes: ``causalscope watch`` with its own local Ray."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from causalscope.config import load_settings
from causalscope.daemon.simulator import SimulationRequest, run_simulation

N_MOVIES = 5


def _watch(folder: Path, sessions: Path, microscope: Path, until_idle: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "causalscope.daemon.cli",
        "watch",
        str(folder),
        "--session",
        "crash",
        "--sessions-dir",
        str(sessions),
        "--workers",
        "1",
        "--until-idle",
        str(until_idle),
        "--no-endpoints",
    ]


def _env(microscope: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CAUSALSCOPE_WATCHER__SETTLE_S": "0.3",
        "CAUSALSCOPE_WATCHER__METADATA_WAIT_S": "1",
        "CAUSALSCOPE_WATCHER__MOVIE_PATTERNS": '["*.tiff"]',
        "CAUSALSCOPE_PROCESSING__DEVICE": "cpu",
        "CAUSALSCOPE_PROCESSING__MAX_IN_FLIGHT": "3",
        "CAUSALSCOPE_DETECTOR__GAIN_REFERENCE": str(microscope / "gain_reference.mrc"),
        "CAUSALSCOPE_DETECTOR__DEFECTS_FILE": str(microscope / "defects.txt"),
        "PYTHONUNBUFFERED": "1",
    }


def test_kill_9_while_in_flight_then_restart_loses_and_repeats_nothing(tmp_path: Path) -> None:
    microscope = tmp_path / "microscope"
    settings = load_settings(overrides={"simulation": {"size_px": 256, "n_frames": 6}})
    run_simulation(settings, SimulationRequest(out_dir=microscope, n_exposures=N_MOVIES, seed=3))
    sessions = tmp_path / "sessions"
    env = _env(microscope)
    repo = Path(__file__).resolve().parents[2]

    first = subprocess.Popen(
        _watch(microscope, sessions, microscope, until_idle=600),
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: Ray's processes die with it
    )
    committed_before: list[str] = []
    output: list[str] = []
    deadline = time.monotonic() + 240
    assert first.stdout is not None
    while time.monotonic() < deadline:
        line = first.stdout.readline()
        if not line:
            break
        output.append(line)
        if line.startswith("[") and line[1:5].strip().isdigit():
            committed_before.append(line.split("]", 1)[1].split()[0])
            break  # one committed, others in flight or queued: now crash hard
    assert committed_before, "".join(output)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL

    # the restart runs until every movie is accounted for, then is stopped as a service manager
    # stops it (SIGTERM): after Ray is up, the daemon's own handler still closes the session
    second = subprocess.Popen(
        _watch(microscope, sessions, microscope, until_idle=600),
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert second.stdout is not None
    seen: list[str] = []
    accounted = 0
    deadline = time.monotonic() + 300
    while accounted < N_MOVIES and time.monotonic() < deadline:
        line = second.stdout.readline()
        if not line:
            break
        seen.append(line)
        committed = line.startswith("[") and line[1:5].strip().isdigit()
        accounted += committed or ": already done" in line
    assert accounted == N_MOVIES, "".join(seen)
    second.send_signal(signal.SIGTERM)
    rest, _ = second.communicate(timeout=120)
    second_stdout = "".join(seen) + rest
    assert second.returncode == 0, second_stdout
    assert "done 5" in second_stdout  # the closing summary: the session was closed, not dropped

    database = sessions / "crash" / "crash.duckdb"
    with duckdb.connect(str(database), read_only=True) as db:
        rows = db.execute("SELECT exposure_id, state, attempts FROM exposures").fetchall()
        results = db.execute(
            "SELECT exposure_id, count(*) FROM results GROUP BY exposure_id"
        ).fetchall()
        runs = db.execute("SELECT count(*) FROM runs").fetchone()
    assert runs == (2,)
    assert len(rows) == N_MOVIES and {state for _, state, _ in rows} == {"done"}
    # one result per exposure: none lost, none committed twice
    assert sorted(n for _, n in results) == [1] * N_MOVIES
    attempts = {exposure_id: n for exposure_id, _, n in rows}
    # what was committed before the crash was not processed again
    for exposure_id in committed_before:
        assert attempts[exposure_id] == 1
        assert f"{exposure_id}: already done" in second_stdout
    assert max(attempts.values()) <= 2
