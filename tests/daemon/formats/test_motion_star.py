"""Motion STAR files: written in RELION's layout, read back by starfile unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import starfile

from causalscope.daemon.formats import write_motion_star


def test_round_trip_with_patches(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    shifts = np.cumsum(rng.normal(size=(7, 2)), axis=0)
    shifts -= shifts[0]
    positions = np.array([[100.0, 120.0], [300.0, 120.0], [100.0, 400.0]])
    patch_shifts = shifts[None] + rng.normal(scale=0.2, size=(3, 7, 2))
    path = write_motion_star(
        tmp_path / "m.star",
        shifts,
        width_px=512,
        height_px=480,
        pixel_size_angstrom=0.885,
        patch_positions_px=positions,
        patch_shifts_px=patch_shifts,
    )
    star = starfile.read(path)
    general = star["general"]
    assert (general["rlnImageSizeX"], general["rlnImageSizeY"], general["rlnImageSizeZ"]) == (
        512,
        480,
        7,
    )
    assert general["rlnMicrographOriginalPixelSize"] == pytest.approx(0.885)
    table = star["global_shift"]
    assert table["rlnMicrographFrameNumber"].tolist() == list(range(1, 8))
    np.testing.assert_allclose(
        table[["rlnMicrographShiftX", "rlnMicrographShiftY"]].to_numpy(), shifts, atol=1e-5
    )
    local = star["local_shift"]
    second = local[local["rlnCoordinateX"].eq(300.0)]
    np.testing.assert_allclose(
        second[["rlnMicrographShiftX", "rlnMicrographShiftY"]].to_numpy(),
        patch_shifts[1],
        atol=1e-5,
    )
    assert not list(tmp_path.glob(".*.part"))


def test_patch_shifts_of_the_wrong_shape_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\(patches, frames, 2\) = \(2, 4, 2\), got \(2, 3, 2\)"):
        write_motion_star(
            tmp_path / "m.star",
            np.zeros((4, 2)),
            width_px=64,
            height_px=64,
            pixel_size_angstrom=1.0,
            patch_positions_px=np.zeros((2, 2)),
            patch_shifts_px=np.zeros((2, 3, 2)),
        )
