"""The exposure worker's triage: the micrograph Fourier-binned to ~4 A/px gives the verdict
the triage gives at that sampling, and a field too narrow for its statistics gives none."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from causalscope.actors._repro import triage_record
from causalscope.models.simulate.triage_scenes import simulate_triage_micrograph


@pytest.mark.parametrize("kind", ["usable", "ice_only"])
def test_a_2_a_per_px_micrograph_is_binned_and_classified(kind: str) -> None:
    scene = simulate_triage_micrograph(kind, size_px=1024, pixel_size_angstrom=2.0, seed=3)
    record = triage_record(torch.as_tensor(scene.image), pixel_size_angstrom=2.0)
    assert record is not None and record.label == kind, record
    assert sum(record.scores.values()) == pytest.approx(1.0)
    assert record.p_usable == pytest.approx(record.scores["usable"])
    assert (record.p_usable > 0.5) == (kind == "usable")


def test_a_narrow_field_is_not_triaged() -> None:
    image = torch.as_tensor(np.random.default_rng(0).normal(100.0, 10.0, (512, 512)))
    assert triage_record(image, pixel_size_angstrom=3.0) is None  # 1536 A wide
