"""A live session on a simulated microscope folder exactly as written: the simulator's
``gain_reference.mrc`` beside the movies is taken as the session's gain, never as an exposure.

Real parts throughout: the simulator, watchdog on the folder, a local Ray cluster, the store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from causalscope.config import load_settings
from causalscope.daemon.live import LiveOptions, LiveSession
from causalscope.daemon.session import SessionPaths
from causalscope.daemon.simulator import GAIN_FILE, SimulationRequest, run_simulation
from causalscope.models.simulate import draw_detector
from tests.daemon._recorder import Recorder

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning"),
]

SIZE = 512
SEED = 3


@pytest.fixture(scope="module")
def microscope(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 512 px movies in EPU's layout, with the gain reference and defects at the top."""
    out = tmp_path_factory.mktemp("microscope")
    settings = load_settings(
        overrides={"simulation": {"size_px": SIZE, "n_frames": 8}, "processing.device": "cpu"}
    )
    run_simulation(settings, SimulationRequest(out_dir=out, n_exposures=2, seed=SEED))
    return out


def test_the_gain_in_the_watched_folder_is_the_sessions_gain(
    ray_cluster: Any, microscope: Path, tmp_path: Path
) -> None:
    # the simulator's gain, drawn again from its seed: the known truth
    truth_gain = draw_detector(np.random.default_rng(SEED + 7), (SIZE, SIZE)).gain_reference
    dead = int(np.count_nonzero(truth_gain == 0))
    assert dead >= SIZE  # at least one dead column: gain correction is visible in the record
    settings = load_settings(
        overrides={
            "processing": {"device": "cpu", "picking": {"enabled": False}},
            "watcher": {"settle_s": 0.3, "metadata_wait_s": 1.0, "poll_interval_s": 0.2},
        }
    )
    assert settings.detector.gain_reference is None and settings.detector.defects_file is None
    paths = SessionPaths.under(tmp_path / "sessions", "gain")
    options = LiveOptions(
        directory=microscope, until_idle_s=2.0, n_workers=1, publish=False, query=False
    )
    calibrations: list[Any] = []

    def pool(calibration: Any) -> Any:
        calibrations.append(calibration)
        return session._ray_pool(calibration)

    reporter = Recorder()
    session = LiveSession(settings, paths, options, reporter=reporter, pool_factory=pool)
    with session:
        session.run()

    (calibration,) = calibrations
    np.testing.assert_array_equal(calibration.gain, truth_gain)
    assert calibration.defect_mask is None
    with duckdb.connect(str(paths.database), read_only=True) as db:
        exposures = db.execute("SELECT exposure_id, state FROM exposures").fetchall()
        quarantine = db.execute("SELECT origin, code FROM quarantine").fetchall()
        motion = db.execute(
            "SELECT exposure_id, n_defect_pixels, n_hot_pixels FROM motion"
        ).fetchall()
        events = db.execute("SELECT message FROM events WHERE kind = 'gain'").fetchall()
    truth = [json.loads(line) for line in (microscope / "truth.jsonl").read_text().splitlines()]
    assert sorted(exposures) == sorted((t["exposure_id"], "done") for t in truth)
    assert quarantine == []  # neither the gain nor anything else was taken for a bad movie
    assert reporter.quarantines == [] and reporter.problems == []
    assert len(motion) == 2
    for _exposure_id, n_defect, n_hot in motion:
        # every pixel the gain marks dead was replaced, and nothing else but hot pixels
        assert n_defect - n_hot == dead
    assert events == [
        (
            f"gain reference {microscope / GAIN_FILE} from the watched folder is used "
            "(detector.gain_reference is not set)",
        )
    ]
