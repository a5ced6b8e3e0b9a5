"""The learned picker fine-tuned live on the operator's labels, with real parts: a watched
folder, a local Ray cluster (2 CPUs), the trainer actor, a DuckDB file.

The operator writes the true particles of the first two exposures as RELION coordinate files
and a third file with a pick outside its micrograph. The session takes the first two (a round
each as they arrive, judged on their held-back rows), refuses the third with an alert naming
it, uses the adopted picker for the exposures after the round and, restarted, again from
``picker.pt``.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from causalscope.config import load_settings
from causalscope.daemon.formats.coordinates import write_coordinates_star
from causalscope.daemon.live import LiveOptions, LiveSession
from causalscope.daemon.session import SessionPaths
from causalscope.daemon.simulator import SimulationRequest, run_simulation
from causalscope.models.picking import match_picks
from tests.daemon._faults import AlertRecorder
from tests.daemon._recorder import SessionThread


def _run_until(session: LiveSession, done: Any, what: str, timeout_s: float = 240) -> None:
    runner = SessionThread(session)
    runner.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert done(), f"{what} not within {timeout_s:g} s; {runner.describe()}"
    finally:
        session.stop_event.set()
        runner.join(timeout=60)
        session.close()


def _fine_tuned(database: Path) -> dict[str, bool]:
    with duckdb.connect(str(database), read_only=True) as db:
        rows = db.execute("SELECT exposure_id, record_json::VARCHAR FROM results").fetchall()
    return {e: json.loads(r)["picking"]["fine_tuned"] for e, r in rows}


def _f1(database: Path, truth: dict[str, Any]) -> float:
    with duckdb.connect(str(database), read_only=True) as db:
        xy = db.execute(
            "SELECT x_px, y_px FROM picks WHERE exposure_id = ?", [truth["exposure_id"]]
        ).fetchall()
    diameter = 2.0 * truth["particle_radius_angstrom"] / truth["pixel_size_angstrom"]
    found = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    return match_picks(found, np.asarray(truth["particles"]), radius_px=0.5 * diameter).f1


def _cryosparc_picks(
    path: Path, picks: dict[str, np.ndarray], *, shape: tuple[int, int], size_px: int
) -> None:
    """A cryoSPARC particle file of ``picks`` (pixels of ``size_px`` square sums) as shares
    of micrographs of ``shape`` ``(ny, nx)``, named as cryoSPARC names motion-corrected ones."""
    dtype = [
        ("location/micrograph_path", "S80"),
        ("location/center_x_frac", "<f4"),
        ("location/center_y_frac", "<f4"),
        ("location/micrograph_shape", "<u4", (2,)),
    ]
    rows = [(name, x, y) for name, xy in picks.items() for x, y in xy]
    table = np.zeros(len(rows), dtype)
    uid = {name: 1000 + i for i, name in enumerate(picks)}  # one per micrograph
    table["location/micrograph_path"] = [
        f"J3/motioncorrected/{uid[n]}_{n}_patch_aligned_doseweighted.mrc".encode()
        for n, _, _ in rows
    ]
    table["location/center_x_frac"] = [x / size_px for _, x, _ in rows]
    table["location/center_y_frac"] = [y / size_px for _, _, y in rows]
    table["location/micrograph_shape"] = shape
    with path.open("wb") as handle:
        np.save(handle, table)


def test_operator_labels_fine_tune_the_picker_live_and_survive_a_restart(
    ray_cluster: Any, tmp_path: Path
) -> None:
    microscope = tmp_path / "microscope"
    # crowded enough that two exposures' held-back rows hold the 20 particles a verdict needs
    simulation = {"size_px": 1024, "n_frames": 6, "particles_per_um2": 12000.0}
    settings = load_settings(overrides={"simulation": simulation, "processing.device": "cpu"})
    run_simulation(settings, SimulationRequest(out_dir=microscope, n_exposures=5, seed=11))
    truth = [json.loads(line) for line in (microscope / "truth.jsonl").read_text().splitlines()]
    movies = {t["exposure_id"]: microscope / t["file"] for t in truth}
    first, second, bad, fourth, fifth = (t["exposure_id"] for t in truth)
    labels = tmp_path / "labels"
    labels.mkdir()
    xy = np.asarray(truth[0]["particles"], dtype=np.float64)
    write_coordinates_star(labels / f"{first}_manualpick.star", xy, np.ones(len(xy)))
    # the second as cryoSPARC exports a manual picking job: one file naming its micrographs
    # (one of them not in this session), positions as shares of the unbinned micrograph
    _cryosparc_picks(
        labels / "J12_manual_picks.cs",
        {second: np.asarray(truth[1]["particles"], dtype=np.float64), "elsewhere": xy[:3]},
        shape=(4 * 1024, 4 * 1024),
        size_px=1024,
    )
    write_coordinates_star(labels / f"{bad}.star", np.array([[5.0, 5.0], [5000.0, 9.0]]), [1, 1])
    watch = tmp_path / "watch"
    watch.mkdir()
    for exposure in (first, second, bad):
        shutil.copy(movies[exposure], watch / movies[exposure].name)
    settings = load_settings(
        overrides={
            "processing": {
                "device": "cpu",
                "picking": {
                    "finetune_every": 0,
                    # the diameter guessed wrong (the particles span 120 A): the shipped picker
                    # suffers, the labels teach the session's picker what a particle is here
                    "particle_diameter_angstrom": 190.0,
                    # rounds from the labels alone (the 2D classes' own: test_picker_classes)
                    "tuning": {"labels": str(labels), "steps": 150, "from_classes": False},
                },
            },
            "watcher": {"settle_s": 0.3, "metadata_wait_s": 1.0, "poll_interval_s": 0.2},
            "detector": {"gain_reference": str(microscope / "gain_reference.mrc")},
            "store": {
                "publish_address": "tcp://127.0.0.1:0",
                "query_address": "tcp://127.0.0.1:0",
                "control_address": "tcp://127.0.0.1:0",
            },
        }
    )
    paths = SessionPaths.under(tmp_path / "sessions", "tune")
    reporter = AlertRecorder()
    session = LiveSession(settings, paths, LiveOptions(directory=watch), reporter=reporter)
    session.open()
    tuner = session.picker_finetuner

    def fourth_done() -> bool:
        # after the round, once no other runs or waits (the restart then has none to do)
        if tuner.adopted >= 1 and not tuner.busy and not (watch / movies[fourth].name).exists():
            shutil.copy(movies[fourth], watch / movies[fourth].name)
        return any(e == fourth for e, _ in reporter.commits)

    _run_until(session, fourth_done, "an adopted fine-tuning round and the next exposure")
    refused = [a for a in reporter.alerts if a.code == "picker_labels_refused"]
    assert len(refused) == 1 and f"{bad}.star" in refused[0].message, reporter.alerts
    assert "x=5000" in refused[0].message, refused[0].message
    with duckdb.connect(str(paths.database), read_only=True) as db:
        rounds = db.execute("SELECT data::VARCHAR FROM events WHERE kind = 'picker'").fetchall()
    report = json.loads(rounds[-1][0])
    assert report["labelled"] == 2 and report["adopted"] == 1, report
    assert report["held_out_particles"] >= 20, report
    assert report["held_out_f1_tuned"] >= report["held_out_f1_shipped"] + 0.1, report
    assert (paths.root / "picker.pt").stat().st_size > 10_000
    assert (tuner.status() or "").startswith("fine-tuned, round"), tuner.status()
    used = _fine_tuned(paths.database)
    assert used[first] is False and used[fourth] is True, used
    f1 = {t["exposure_id"]: _f1(paths.database, t) for t in (truth[0], truth[1], truth[3])}
    assert f1[fourth] >= max(f1[first], f1[second]) + 0.1, f1

    # restarted: the adopted picker again from the first exposure on; the labels are read
    # again (for later rounds) but, judged by a round already, start none
    shutil.copy(movies[fifth], watch / movies[fifth].name)
    reporter = AlertRecorder()
    session = LiveSession(settings, paths, LiveOptions(directory=watch), reporter=reporter)
    session.open()
    tuner = session.picker_finetuner
    assert tuner.status() == "fine-tuned (an earlier run's)"
    _run_until(
        session,
        lambda: tuner.labels_read >= 2 and any(e == fifth for e, _ in reporter.commits),
        "the restart",
    )
    assert _fine_tuned(paths.database)[fifth] is True
    # (a round starts in the poll that reads the labels, if it starts at all)
    assert tuner.rounds == 0 and not tuner.running, tuner.last
    with duckdb.connect(str(paths.database), read_only=True) as db:
        after = db.execute("SELECT count(*) FROM events WHERE kind = 'picker'").fetchone()
    assert after is not None and after[0] == len(rounds), (after, len(rounds))


def test_labels_for_a_session_that_does_not_pick_with_the_learned_picker_raise_an_alert(
    tmp_path: Path,
) -> None:
    from causalscope.daemon.finetune import PickerFinetuner

    picking = {"picker": "blob", "tuning": {"labels": str(tmp_path)}}
    settings = load_settings(overrides={"processing": {"picking": picking}})
    tuner = PickerFinetuner.for_session(settings.processing.picking, tmp_path)
    assert not tuner.enabled and tuner.status() is None
    [alert] = tuner.alerts()
    assert alert.code == "picker_labels_refused" and "this session picks by blob" in alert.message
    assert str(tmp_path) in alert.message and 'picker = "learned"' in alert.advice
    assert tuner.alerts() == []  # said once


def test_the_status_says_which_label_files_name_no_exposure_done_yet(tmp_path: Path) -> None:
    """A cryoSPARC export naming micrographs the session has not processed (or names
    differently) and a file for an exposure still to come: the dashboard's line says so, by
    name, instead of waiting in silence."""
    from causalscope.daemon.finetune import PickerFinetuner

    labels = tmp_path / "labels"
    labels.mkdir()
    (tmp_path / "session" / "micrographs").mkdir(parents=True)
    _cryosparc_picks(
        labels / "J12_picks.cs",
        {"FoilHole_9_Data_1": np.array([[10.0, 20.0]]), "FoilHole_9_Data_2": np.ones((1, 2))},
        shape=(4096, 4096),
        size_px=1024,
    )
    write_coordinates_star(labels / "FoilHole_8.star", np.array([[5.0, 6.0]]), [1.0])
    picking = {"picker": "learned", "tuning": {"labels": str(labels)}}
    settings = load_settings(overrides={"processing": {"picking": picking}})
    tuner = PickerFinetuner.for_session(settings.processing.picking, tmp_path / "session")
    assert tuner.poll(None) is None  # nothing to read: no trainer, no round
    assert tuner.status() == (
        "shipped (no labels yet); 2 label file(s) name no exposure done yet "
        "(FoilHole_8.star, J12_picks.cs)"
    )
    assert tuner.labels_read == 0 and not tuner.running
