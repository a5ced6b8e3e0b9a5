"""The session evaluator as a real Ray actor, killed in the middle of a session (as Ray's memory
monitor kills a process): the tracker starts another from its last saved update, hands it every
exposure again, and the next update holds every particle once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from causalscope.daemon.evaluation import EvaluationTracker
from causalscope.daemon.formats.maps import write_mrc_map
from tests.actors.test_evaluation import APIX, EXPOSURES, PER_EXPOSURE, _session, _settings


def _poll_until(tracker: EvaluationTracker, particles: int, seen: list[str]) -> Any:
    """Poll (keeping the errors it reports) until an update holds ``particles``."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        for update in tracker.poll(wait_s=2.0):
            if update.particles == particles:
                return update
        seen += tracker.errors
        tracker.errors.clear()
    raise AssertionError(f"no update with {particles} particles; errors {seen}")


@pytest.mark.timeout(400)
def test_a_killed_evaluator_is_started_again_and_loses_no_particle(
    tmp_path: Path, ray_cluster: Any
) -> None:
    exposures, reference = _session(tmp_path)
    path = tmp_path / "reference.mrc"
    write_mrc_map(path, reference, pixel_size_angstrom=APIX)
    tracker = EvaluationTracker(
        _settings(path), tmp_path / "state", update_every=2 * PER_EXPOSURE, idle_s=600.0
    )
    seen: list[str] = []
    try:
        for exposure_id, star in exposures[:2]:
            tracker.committed(exposure_id, str(star), PER_EXPOSURE)
        first = _poll_until(tracker, 2 * PER_EXPOSURE, seen)
        assert first.version == 1 and tracker.restarts == 0
        ray_cluster.kill(tracker._worker, no_restart=True)
        for exposure_id, star in exposures[2:]:
            tracker.committed(exposure_id, str(star), PER_EXPOSURE)
        n = PER_EXPOSURE * EXPOSURES
        last = _poll_until(tracker, n, seen)
    finally:
        tracker.close()
    assert tracker.restarts == 1
    assert any("evaluator died" in message and "started again" in message for message in seen)
    assert last.class_set is not None and last.map is not None
    assert last.particles == last.class_set.particles == last.map.particles == n
    assert sum(c.particles for c in last.class_set.classes) == n
    assert last.version == 2  # the new actor went on from the first update's state
