"""The live pipeline end to end: a watched folder (or a frame stream) -> Ray actors -> the store.

Real parts throughout: watchdog on a temporary folder, a local Ray cluster (2 CPUs), a DuckDB
file, ZeroMQ sockets on 127.0.0.1. Movies are simulated with a known truth.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import mrcfile
import numpy as np
import pytest
import starfile

from causalscope.config import Settings, load_settings
from causalscope.daemon.formats.png import read_png
from causalscope.daemon.live import LiveOptions, LiveSession
from causalscope.daemon.session import SessionPaths
from causalscope.daemon.simulator import SimulationRequest, run_simulation
from tests.daemon._faults import AlertRecorder
from tests.daemon._recorder import Recorder, SessionThread

SIZE = 1024
FRAMES = 12


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """Three 1024 x 1024 x 12 movies in EPU's layout, with gain, defects and truth; ice thick
    enough (about 60 nm) for the rings to measure it, not only bound it from above."""
    out = tmp_path_factory.mktemp("microscope")
    simulation = {"size_px": SIZE, "n_frames": FRAMES, "ice_median_nm": 60.0}
    settings = load_settings(overrides={"simulation": simulation, "processing.device": "cpu"})
    run_simulation(settings, SimulationRequest(out_dir=out, n_exposures=3, seed=5))
    truth = [json.loads(line) for line in (out / "truth.jsonl").read_text().splitlines()]
    return out, truth


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """Three 512 x 512 x 8 movies like ``simulated``'s, for the tests of what happens around
    processing (crashes, full disks, streams, operator actions) rather than of its results."""
    out = tmp_path_factory.mktemp("small_microscope")
    settings = load_settings(
        overrides={"simulation": {"size_px": 512, "n_frames": 8}, "processing.device": "cpu"}
    )
    run_simulation(settings, SimulationRequest(out_dir=out, n_exposures=3, seed=5))
    truth = [json.loads(line) for line in (out / "truth.jsonl").read_text().splitlines()]
    return out, truth


def _settings(microscope: Path, **extra: Any) -> Settings:
    overrides: dict[str, Any] = {
        "processing": {"device": "cpu"},
        "watcher": {"settle_s": 0.3, "metadata_wait_s": 1.0, "poll_interval_s": 0.2},
        "detector": {
            "gain_reference": str(microscope / "gain_reference.mrc"),
            "defects_file": str(microscope / "defects.txt"),
        },
        # any free ports: a session or another test run on this machine may hold the defaults
        "store": {
            "publish_address": "tcp://127.0.0.1:0",
            "query_address": "tcp://127.0.0.1:0",
            "control_address": "tcp://127.0.0.1:0",
        },
    }
    overrides.update(extra)
    return load_settings(overrides=overrides)


def _copy_movies(microscope: Path, watch: Path) -> None:
    for path in (microscope / "Images-Disc1").rglob("*"):
        if path.is_file():
            target = watch / path.relative_to(microscope)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)


def _bad_movies(watch: Path, good: Path) -> dict[str, str]:
    """One movie per kind of bad input; returns file name -> the word its reason must hold."""
    bad = watch / "bad"
    bad.mkdir()
    (bad / "empty_fractions.tiff").write_bytes(b"")
    data = good.read_bytes()
    (bad / "truncated_fractions.tiff").write_bytes(data[: len(data) // 2])
    (bad / "corrupt_fractions.tiff").write_bytes(np.random.default_rng(0).bytes(100_000))
    with mrcfile.new(bad / "complex.mrc") as mrc:  # a dtype no detector writes
        mrc.set_data(np.zeros((4, 64, 64), dtype=np.complex64))
    nan = np.random.default_rng(1).poisson(2.0, (4, SIZE, SIZE)).astype(np.float32)
    nan[1, 10:20, 10:20] = np.nan
    with mrcfile.new(bad / "nan.mrc") as mrc:
        mrc.set_data(nan)
    return {
        "empty_fractions": "empty_fractions.tiff",
        "truncated_fractions": "truncated_fractions.tiff",
        "corrupt_fractions": "corrupt_fractions.tiff",
        "complex": "complex.mrc",
        "nan": "nan",
    }


def _db(paths: SessionPaths) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(paths.database), read_only=True)


def test_watched_folder_is_processed_once_and_bad_movies_are_quarantined(
    ray_cluster: Any, simulated: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    microscope, truth = simulated
    watch = tmp_path / "watch"
    _copy_movies(microscope, watch)
    good_movie = next(watch.rglob("*_fractions.tiff"))
    expected_bad = _bad_movies(watch, good_movie)
    settings = _settings(microscope)
    paths = SessionPaths.under(tmp_path / "sessions", "s1")
    reporter = Recorder()
    options = LiveOptions(directory=watch, until_idle_s=2.0, n_workers=2)

    session = LiveSession(settings, paths, options, reporter=reporter)
    received: list[dict[str, Any]] = []
    with session:
        assert session.store is not None and session.store.publish_endpoint
        subscriber = _subscribe(session.store.publish_endpoint, received)
        session.run()
        subscriber.join(timeout=5)

    with _db(paths) as db:
        done = db.execute(
            "SELECT exposure_id, attempts FROM exposures "
            "WHERE state = 'done' AND gate_status != 'fail'"
        ).fetchall()
        nan_state = db.execute(
            "SELECT state, gate_status FROM exposures WHERE exposure_id = 'nan'"
        ).fetchone()
        ctf = {
            row[0]: row[1:]
            for row in db.execute(
                "SELECT exposure_id, defocus_u_angstrom, defocus_v_angstrom FROM ctf"
            ).fetchall()
        }
        quarantine = db.execute("SELECT exposure_id, code, reason FROM quarantine").fetchall()
        ice = dict(db.execute("SELECT exposure_id, ice_thickness_nm FROM ctf").fetchall())
        results = db.execute("SELECT count(*) FROM results").fetchone()
        causal_inputs = db.execute(
            "SELECT exposure_id, ice_thickness_nm, fit_resolution_angstrom, beam_tilt_mrad "
            "FROM causal_inputs ORDER BY seq"
        ).fetchall()
        causal = db.execute(
            "SELECT exposure_id, model_index, observed_resolution_angstrom, "
            "best_resolution_angstrom, predicted_loss_angstrom, unexplained_angstrom, "
            "(SELECT sum(share_angstrom) FROM causal_shares AS s "
            "WHERE s.exposure_id = c.exposure_id) FROM causal AS c ORDER BY model_index"
        ).fetchall()
        ranking = db.execute(
            "SELECT count(DISTINCT model_index), count(DISTINCT cause) FROM causal_ranking"
        ).fetchone()
    # every good movie once, on its first attempt, with the CTF of its truth
    assert sorted(row[0] for row in done) == sorted(t["exposure_id"] for t in truth)
    assert all(row[1] == 1 for row in done)
    # NaN frames: a record that says why (gate fail) and a quarantine row; the others never
    # became records
    assert nan_state == ("done", "fail")
    assert results == (4,)
    for t in truth:
        found = sum(ctf[t["exposure_id"]]) / 2
        true = (t["defocus_u_angstrom"] + t["defocus_v_angstrom"]) / 2
        assert abs(found - true) < 0.03 * true, (t["exposure_id"], found, true)
    # the causal-prior actor learned from every exposure it can read (a supported fit with its
    # ice thickness: one whose ice the rings bound only from above has none), in commit order,
    # and its shares plus the unexplained rest add up to each exposure's loss against the best
    usable = {t["exposure_id"] for t in truth if ice.get(t["exposure_id"]) is not None}
    n_learned = len(usable)
    assert n_learned >= 2
    assert {row[0] for row in causal_inputs} == usable
    assert all(row[1] > 0 and row[2] > 0 for row in causal_inputs)
    # beam tilt from the EPU metadata's image shift (the first shot in a hole has none)
    assert all(row[3] >= 0 for row in causal_inputs) and any(row[3] > 0 for row in causal_inputs)
    assert [row[0] for row in causal] == [row[0] for row in causal_inputs]
    assert [row[1] for row in causal] == list(range(1, n_learned + 1))
    for _, _, observed, best, predicted, unexplained, share_sum in causal:
        assert share_sum == pytest.approx(predicted, abs=1e-9)
        assert predicted + unexplained == pytest.approx(observed - best, abs=1e-9)
    assert ranking == (n_learned, 7)  # the history: the ranking as it stood after each update
    # every bad movie quarantined with a reason that names it; the session went on
    by_id = {row[0]: row for row in quarantine}
    assert set(by_id) == set(expected_bad), quarantine
    for exposure_id, word in expected_bad.items():
        assert word in by_id[exposure_id][2], by_id[exposure_id]
    assert by_id["nan"][1] == "nonfinite_pixels"
    # outputs: RELION's micrographs_ctf.star lists the usable micrographs; thumbnails are PNG
    star = starfile.read(paths.ctf_star)
    assert len(star["micrographs"]) == sum(status != "fail" for _, status in reporter.commits)
    for t in truth:
        picture = read_png(paths.root / "thumbnails" / f"{t['exposure_id']}_ps.png")
        assert picture.dtype == np.uint8 and picture.shape == (SIZE // 2, SIZE // 2)
    # the PUB socket published every committed exposure
    published = {row["exposure_id"] for row in received if row.get("topic") == "exposure"}
    assert published == {t["exposure_id"] for t in truth} | {"nan"}
    causal_published = [row for row in received if row.get("topic") == "causal"]
    assert [row["exposure_id"] for row in causal_published] == [row[0] for row in causal]
    assert len(causal_published[-1]["ranking"]) == 7

    # a restart on the same folder: nothing is redone, nothing is lost
    again = Recorder()
    with LiveSession(settings, paths, options, reporter=again) as session:
        session.run()
    assert again.commits == []
    assert sorted(again.skips) == sorted([t["exposure_id"] for t in truth] + list(expected_bad))
    with _db(paths) as db:
        assert db.execute("SELECT count(*) FROM results").fetchone() == (4,)
        assert db.execute("SELECT max(attempts) FROM exposures").fetchone() == (1,)
        assert db.execute("SELECT count(*), max(model_index) FROM causal").fetchone() == (
            n_learned,
            n_learned,
        )


def _subscribe(endpoint: str, received: list[dict[str, Any]]) -> threading.Thread:
    import zmq

    context = zmq.Context.instance()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(endpoint)

    def loop() -> None:
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        idle = 0
        while idle < 40:
            if poller.poll(250):
                topic, body = sub.recv_multipart()
                received.append({"topic": topic.decode(), **json.loads(body)})
                idle = 0
            else:
                idle += 1
        sub.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


class _KillFirst:
    """A Ray pool whose actor is killed (SIGKILL) right after the first exposure is handed out."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._killed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def submit(self, task: Any) -> None:
        self._pool.submit(task)
        if not self._killed:
            self._killed = True
            for pid in self._pool.actor_process_ids():
                os.kill(pid, signal.SIGKILL)


def test_an_actor_killed_mid_exposure_is_replaced_and_the_exposure_done_once(
    ray_cluster: Any, small: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    from causalscope.daemon.workers import RayWorkerPool

    microscope, _truth = small
    watch = tmp_path / "watch"
    _copy_movies(microscope, watch)
    settings = _settings(microscope, processing={"device": "cpu", "max_in_flight": 1})
    paths = SessionPaths.under(tmp_path / "sessions", "crash")
    reporter = AlertRecorder()

    def factory(calibration: Any) -> Any:
        return _KillFirst(
            RayWorkerPool(settings, output_dir=paths.root, calibration=calibration, n_workers=1)
        )

    options = LiveOptions(directory=watch, until_idle_s=2.0, publish=False, query=False)
    with LiveSession(settings, paths, options, reporter=reporter, pool_factory=factory) as s:
        s.run()
        health = s.status()["worker_health"]
        # an idle actor that dies is seen within a few seconds, without an exposure
        assert s.scheduler is not None and s.scheduler.pool is not None
        for pid in s.scheduler.pool.actor_process_ids():  # the Ray pool's
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while s.status()["worker_health"]["alive"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert s.status()["worker_health"]["alive"] == 0
    assert not reporter.problems
    # the status's worker health: the killed actor replaced, its replacement alive and measured
    assert health["configured"] == 1 and health["alive"] == 1
    assert health["replaced_after_failure"] == 1 and health["recycled_for_memory"] == 0
    assert {k: n for k, n in health["failures"].items() if n} == {"actor_died": 1}
    assert len(health["memory_bytes"]) == 1 and health["memory_bytes"][0] > 2**20
    failures = [alert for alert in reporter.alerts if alert.code.startswith("ray_")]
    assert [alert.code for alert in failures] == ["ray_actor_died"]  # one alert, with advice
    assert "Worker crashed" in failures[0].message and failures[0].advice
    with _db(paths) as db:
        rows = db.execute("SELECT exposure_id, attempts, state FROM exposures").fetchall()
        assert db.execute("SELECT count(*) FROM results").fetchone() == (3,)
    attempts = sorted(row[1] for row in rows)
    assert attempts == [1, 1, 2]  # the killed one once more, nothing else twice
    assert {row[2] for row in rows} == {"done"}


def test_unwritable_outputs_pause_processing_and_lose_nothing(
    ray_cluster: Any, small: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    microscope, _truth = small
    watch = tmp_path / "watch"
    _copy_movies(microscope, watch)
    settings = _settings(microscope)
    paths = SessionPaths.under(tmp_path / "sessions", "disk")
    paths.root.mkdir(parents=True)
    blocker = paths.root / "micrographs"
    blocker.write_text("a file where the micrographs folder should be")  # every write fails
    reporter = Recorder()
    options = LiveOptions(
        directory=watch, until_idle_s=2.0, publish=False, query=False, retry_after_s=0.5
    )
    session = LiveSession(settings, paths, options, reporter=reporter)
    with session:
        # the operator frees the folder once the problem has been reported
        def fix() -> bool:
            return bool(reporter.problems)

        while not fix():
            assert session.scheduler is not None
            session.scheduler.step(0.2)
        blocker.unlink()
        session.run()
    title, message = reporter.problems[0]
    assert title == "Cannot write outputs"
    assert "micrographs" in message and "no exposure is lost" in message
    with _db(paths) as db:
        assert db.execute("SELECT count(*) FROM exposures WHERE state = 'done'").fetchone() == (3,)
        assert db.execute("SELECT count(*) FROM results").fetchone() == (3,)


def _free_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def test_frame_stream_session_assembles_processes_and_quarantines_garbage(
    ray_cluster: Any, small: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    import zmq

    from causalscope.daemon.formats import read_movie
    from causalscope.daemon.sources.stream_sender import StreamFaults, send_exposure

    microscope, truth = small
    settings = _settings(microscope)
    address = _free_address()
    paths = SessionPaths.under(tmp_path / "sessions", "stream")
    reporter = Recorder()
    options = LiveOptions(stream_address=address, until_idle_s=2.0, publish=False, query=False)
    movies = {t["exposure_id"]: read_movie(microscope / t["file"]) for t in truth[:2]}
    with LiveSession(settings, paths, options, reporter=reporter) as session:
        context = zmq.Context.instance()
        push = context.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 2000)
        push.connect(address)
        push.send_multipart([b"not json at all", b"x"])
        for exposure_id, frames in movies.items():
            send_exposure(push, exposure_id, frames, pixel_size_angstrom=1.0)
        send_exposure(
            push,
            "lossy",
            next(iter(movies.values())),
            pixel_size_angstrom=1.0,
            faults=StreamFaults(drop=(3,)),
        )
        push.close()
        session.run()
    with _db(paths) as db:
        done = db.execute("SELECT exposure_id FROM exposures WHERE state = 'done'").fetchall()
        codes = db.execute("SELECT code, reason FROM quarantine").fetchall()
    assert sorted(row[0] for row in done) == sorted(movies)
    assert {code for code, _ in codes} == {"garbage_message", "missing_frames"}
    missing = next(reason for code, reason in codes if code == "missing_frames")
    assert "lossy" in missing and "3" in missing
    # the streamed frames were spooled bit-exactly before processing
    for exposure_id, frames in movies.items():
        assert np.array_equal(read_movie(paths.spool / f"{exposure_id}.mrc"), frames)


def test_operator_actions_reach_the_running_session(
    ray_cluster: Any, simulated: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    import base64
    import time

    import imagecodecs

    from causalscope.daemon.control import ControlError, control_request
    from causalscope.daemon.store import read_endpoints

    microscope, _truth = simulated
    watch = tmp_path / "watch"
    _copy_movies(microscope, watch)
    for extra in list(watch.rglob("*_fractions.tiff"))[1:]:
        extra.unlink()  # one movie is enough
    # fine-tune the denoiser after every exposure, briefly: the round's checkpoint must appear
    settings = _settings(
        microscope,
        processing={"device": "cpu", "picking": {"finetune_every": 1, "finetune_steps": 3}},
    )
    paths = SessionPaths.under(tmp_path / "sessions", "ops")
    reporter = Recorder()
    session = LiveSession(settings, paths, LiveOptions(directory=watch), reporter=reporter)
    session.open()
    runner = SessionThread(session)
    runner.start()
    try:
        endpoints = read_endpoints(paths.database)
        assert endpoints is not None and endpoints.control and endpoints.token
        assert (os.stat(paths.root / f"{paths.name}.endpoints.json").st_mode & 0o777) == 0o600
        deadline = time.monotonic() + 120
        while not reporter.commits and time.monotonic() < deadline:
            time.sleep(0.2)
        assert reporter.commits, runner.describe()
        exposure_id = reporter.commits[0][0]

        def act(action: str, **params: Any) -> dict[str, Any]:
            assert endpoints is not None and endpoints.control and endpoints.token
            return control_request(endpoints.control, endpoints.token, action, **params)

        assert act("pause")["paused"] is True
        assert act("status")["status"]["paused"] is True
        assert act("resume")["paused"] is False
        act("label", exposure_id=exposure_id, label="reject")
        thresholds = act("set_threshold", name="ice_thickness_nm", value=55)["thresholds"]
        assert thresholds["ice_thickness_nm"] == 55
        png = base64.b64decode(
            act("thumbnail", exposure_id=exposure_id, kind="power_spectrum")["png_base64"]
        )
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        picks = base64.b64decode(
            act("thumbnail", exposure_id=exposure_id, kind="picks")["png_base64"]
        )
        assert imagecodecs.png_decode(picks).shape[-1] == 3  # colour: picks and masked areas
        with pytest.raises(ControlError, match="no exposure"):
            act("thumbnail", exposure_id="nope")
        status = act("status")["status"]
        assert status["done"] == 1 and status["workers"].startswith("2 CPU actor")
        deadline = time.monotonic() + 240  # a fine-tuning round waits for a free core
        while session.finetuner.rounds < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert session.finetuner.rounds >= 1, "no fine-tuning round within 240 s"
        assert (paths.root / "denoiser.pt").stat().st_size > 100_000
    finally:
        session.stop_event.set()
        runner.join(timeout=30)
        session.close()
    with _db(paths) as db:
        assert db.execute("SELECT exposure_id, label FROM labels").fetchall() == [
            (exposure_id, "reject")
        ]
        kinds = [row[0] for row in db.execute("SELECT kind FROM events ORDER BY id").fetchall()]
    assert {"pause", "resume", "threshold", "denoiser"} <= set(kinds)
