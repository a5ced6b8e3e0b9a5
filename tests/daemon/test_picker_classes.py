"""The session's 2D classes teach its learned picker, with real parts: the trainer as a Ray actor
on a local cluster (2 CPUs), the evaluator's STAR files of selected and excluded particles, the
session's MRC micrographs and a labels folder.

A round starts from the operator's label file; once the classes' selected particles reach 50,
their picks (selected as particles, excluded as junk) join the next round, which the labels'
held-back rows still judge; an unchanged selection starts none, a restarted session none for
the selection a round already had.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from causalscope.config import load_settings
from causalscope.daemon.finetune import PickerFinetuner
from causalscope.daemon.formats import write_micrograph
from causalscope.daemon.formats.coordinates import write_coordinates_star
from causalscope.models.simulate.still import still_micrograph
from tests.actors.test_picker_trainer import _class_files


def _tuner(root: Path, labels: Path) -> PickerFinetuner:
    picking = {
        "picker": "learned",
        "particle_diameter_angstrom": 120.0,
        "tuning": {"labels": str(labels), "steps": 20},
    }
    settings = load_settings(overrides={"processing": {"picking": picking}})
    return PickerFinetuner.for_session(settings.processing.picking, root)


def _next_round(tuner: PickerFinetuner, timeout_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        report = tuner.poll(None)
        if report is not None:
            return report
        time.sleep(0.2)
    raise AssertionError(f"no round within {timeout_s:g} s: {tuner.status()}")


def _settle(tuner: PickerFinetuner, seconds: float = 5.0) -> None:
    """Poll until the tuner has nothing in flight, and a little longer."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or tuner.busy:
        assert tuner.poll(None) is None, "a round ran"
        time.sleep(0.2)


def test_the_session_classes_join_the_picker_rounds_once(ray_cluster: Any, tmp_path: Path) -> None:
    root, labels = tmp_path / "session", tmp_path / "labels"
    (root / "micrographs").mkdir(parents=True)
    labels.mkdir()
    truth = {}
    for seed, exposure in ((41, "e1"), (42, "e2"), (43, "e3")):
        image, particles = still_micrograph(
            1024, particles_per_1024=60, seed=seed, dose_e_per_a2=40.0, ice_thickness_nm=30.0
        )
        path = root / "micrographs" / f"{exposure}_DW.mrc"
        write_micrograph(path, image, pixel_size_angstrom=1.0)
        truth[exposure] = np.asarray(particles["particles"], dtype=np.float64)
    write_coordinates_star(labels / "e3.star", truth["e3"], np.ones(len(truth["e3"])))
    tuner = _tuner(root, labels)
    first = _next_round(tuner)
    assert first["labelled"] == 1 and first["classified"] == 0, first

    classes = root / "reconstruction" / "classes"
    classes.mkdir(parents=True)
    junk = np.array([[200.0, 200.0], [800.0, 300.0]])
    _class_files(classes, {e: (truth[e][:30], junk) for e in ("e1", "e2")})
    second = _next_round(tuner)
    assert second["labelled"] == 1 and second["classified"] == 2, second
    assert "2 sorted by 2D classes" in tuner.describe(second)
    assert "1 labelled + 2 by 2D classes" in (tuner.status() or ""), tuner.status()
    _settle(tuner)  # the same selection: no round
    assert tuner.rounds == 2

    restarted = _tuner(root, labels)
    _settle(restarted)  # the label and the selection were judged by the first run's rounds
    assert restarted.labels_read == 1 and restarted.rounds == 0
