"""RELION's accumulated motion, reproduced from RELION's own per-frame shifts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import starfile

from causalscope.models.motion import accumulated_motion


def test_matches_relion_tutorial(shared_data: Path) -> None:
    folder = shared_data / "relion_tutorial" / "motion"
    table = starfile.read(folder / "corrected_micrographs.star")
    optics, mics = table["optics"], table["micrographs"]
    pixel = float(optics["rlnMicrographPixelSize"].iloc[0])
    checked = 0
    for path in sorted(folder.glob("20170629_*.star")):
        movie = starfile.read(path)
        general = movie["general"]
        shifts = movie["global_shift"][["rlnMicrographShiftX", "rlnMicrographShiftY"]].to_numpy()
        ours = accumulated_motion(
            shifts,
            pixel_size_angstrom=pixel,
            dose_per_frame_e_per_a2=float(general["rlnMicrographDoseRate"]),
            pre_exposure_e_per_a2=float(general["rlnMicrographPreExposure"]),
        )
        row = mics[mics["rlnMicrographMetadata"].str.endswith(path.name)].iloc[0]
        # RELION's values are sums of pixel shifts (labelled Angstrom): ours / pixel size
        assert ours.total_angstrom / pixel == pytest.approx(row["rlnAccumMotionTotal"], abs=1e-5)
        assert ours.early_angstrom / pixel == pytest.approx(row["rlnAccumMotionEarly"], abs=1e-5)
        assert ours.late_angstrom / pixel == pytest.approx(row["rlnAccumMotionLate"], abs=1e-5)
        checked += 1
    assert checked == 3


def test_early_late_split() -> None:
    shifts = np.array([[0, 0], [3, 4], [3, 4], [6, 8], [6, 9]], dtype=float)
    # dose 2 e/A^2 per frame: cutoff frame (4 - 0) / 2 = 2, so only the step into frame 2 is early
    a = accumulated_motion(shifts, pixel_size_angstrom=2.0, dose_per_frame_e_per_a2=2.0)
    assert a.early_angstrom == pytest.approx(10.0)
    assert a.late_angstrom == pytest.approx(12.0)
    assert a.total_angstrom == pytest.approx(22.0)
