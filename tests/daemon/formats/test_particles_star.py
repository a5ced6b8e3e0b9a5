"""particles.star + MRCS stack: written in RELION's layout, read back unchanged."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from causalscope.daemon.formats.particles_star import write_particle_stack, write_particles_star

OPTICS = {
    "pixel_size_angstrom": 1.5,
    "image_size_px": 32,
    "voltage_kv": 300.0,
    "spherical_aberration_mm": 2.7,
    "amplitude_contrast": 0.07,
    "phase_flipped": True,
}


def _table(names: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = len(names)
    return pd.DataFrame(
        {
            "x_px": rng.uniform(0, 4096, n),
            "y_px": rng.uniform(0, 4096, n),
            "image_name": names,
            "micrograph_name": ["Restored/m1.mrc"] * n,
            "defocus_u_angstrom": [15_200.0] * n,
            "defocus_v_angstrom": [14_800.0] * n,
            "defocus_angle_deg": [31.5] * n,
            "figure_of_merit": rng.uniform(0, 5, n),
        }
    )


def test_round_trip(tmp_path: Path) -> None:
    stack = np.random.default_rng(1).normal(size=(5, 32, 32)).astype(np.float32)
    names = write_particle_stack(tmp_path / "m1.mrcs", stack, pixel_size_angstrom=1.5)
    assert names == [f"{i}@{tmp_path / 'm1.mrcs'}" for i in range(1, 6)]
    with mrcfile.open(tmp_path / "m1.mrcs") as mrc:
        np.testing.assert_array_equal(mrc.data, stack)
        assert float(mrc.voxel_size.x) == pytest.approx(1.5)
    table = _table(names)
    path = write_particles_star(tmp_path / "particles.star", OPTICS, table)
    star = starfile.read(path)
    optics = star["optics"]
    assert optics["rlnImageSize"].tolist() == [32]
    assert optics["rlnImagePixelSize"].tolist() == [pytest.approx(1.5)]
    assert optics["rlnMicrographOriginalPixelSize"].tolist() == [pytest.approx(1.5)]
    assert optics["rlnImageDimensionality"].tolist() == [2]
    assert optics["rlnCtfDataArePhaseFlipped"].tolist() == [1]
    assert optics["rlnVoltage"].tolist() == [pytest.approx(300.0)]
    particles = star["particles"]
    assert particles["rlnImageName"].tolist() == names
    assert particles["rlnMicrographName"].tolist() == table["micrograph_name"].tolist()
    assert particles["rlnOpticsGroup"].tolist() == [1] * 5
    for label, column in [
        ("rlnCoordinateX", "x_px"),
        ("rlnCoordinateY", "y_px"),
        ("rlnDefocusU", "defocus_u_angstrom"),
        ("rlnDefocusV", "defocus_v_angstrom"),
        ("rlnDefocusAngle", "defocus_angle_deg"),
        ("rlnAutopickFigureOfMerit", "figure_of_merit"),
    ]:
        np.testing.assert_allclose(
            particles[label], table[column], atol=1e-6, err_msg=label
        )  # starfile writes %.6f
    assert "rlnPhaseShift" not in particles.columns  # all zero: not written
    # the image names resolve to the boxes they name
    index, stack_path = names[3].split("@")
    with mrcfile.open(stack_path) as mrc:
        np.testing.assert_array_equal(mrc.data[int(index) - 1], stack[3])


def test_nonzero_phase_shift_is_written(tmp_path: Path) -> None:
    table = _table(["1@s.mrcs", "2@s.mrcs"]).assign(phase_shift_deg=[0.0, 90.0])
    star = starfile.read(write_particles_star(tmp_path / "p.star", OPTICS, table))
    assert star["particles"]["rlnPhaseShift"].tolist() == [0.0, 90.0]


def test_atomic_write_leaves_no_temporary(tmp_path: Path) -> None:
    write_particles_star(tmp_path / "p.star", OPTICS, _table(["1@s.mrcs"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.star"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"x_px": [np.nan]}, "x_px of particle 0"),
        ({"bogus": [1]}, "unknown"),
    ],
)
def test_bad_tables_are_rejected(
    tmp_path: Path, change: dict[str, list[object]], message: str
) -> None:
    table = _table(["1@s.mrcs"]).assign(**change)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        write_particles_star(tmp_path / "p.star", OPTICS, table)
    assert not (tmp_path / "p.star").exists()


def test_bad_optics_and_stack_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lacks"):
        write_particles_star(tmp_path / "p.star", {"voltage_kv": 300.0}, _table(["1@s.mrcs"]))
    with pytest.raises(ValueError, match="non-finite"):
        write_particle_stack(
            tmp_path / "s.mrcs", np.full((1, 8, 8), np.nan), pixel_size_angstrom=1.0
        )


def test_read_back_what_was_written(tmp_path: Path) -> None:
    from causalscope.daemon.formats.particles_read import read_particles

    boxes = np.random.default_rng(1).normal(size=(4, 32, 32)).astype(np.float32)
    names = write_particle_stack(tmp_path / "m1.mrcs", boxes, pixel_size_angstrom=1.5)
    table = _table(names)
    star = write_particles_star(tmp_path / "m1.star", OPTICS, table)
    particles = read_particles(star)
    assert particles.images is not None
    np.testing.assert_array_equal(particles.images, boxes)
    assert particles.pixel_size_angstrom == 1.5 and particles.ctfs.phase_flipped
    np.testing.assert_allclose(particles.ctfs.defocus_u_angstrom, table["defocus_u_angstrom"])
    np.testing.assert_allclose(particles.ctfs.amplitude_contrast, 0.07)
    assert particles.euler_deg is None and particles.half_set is None
    np.testing.assert_array_equal(particles.offsets_px, np.zeros((4, 2)))
    assert particles.micrograph_names == ("Restored/m1.mrc",) * 4


def test_reading_names_the_missing_stack(tmp_path: Path) -> None:
    from causalscope.daemon.formats.particles_read import read_particles
    from causalscope.models.errors import FormatError

    boxes = np.zeros((2, 32, 32), dtype=np.float32)
    names = write_particle_stack(tmp_path / "gone.mrcs", boxes, pixel_size_angstrom=1.5)
    star = write_particles_star(tmp_path / "gone.star", OPTICS, _table(names))
    (tmp_path / "gone.mrcs").unlink()
    with pytest.raises(FormatError, match=r"gone\.mrcs does not exist"):
        read_particles(star)
    assert len(read_particles(star, load_images=False)) == 2


def test_relion_30_and_31_files_with_poses(shared_data: Path) -> None:
    from causalscope.daemon.formats.particles_read import read_particles

    folder = shared_data / "particles"
    old = read_particles(folder / "empiar_10076_7.star")  # RELION 3.0: optics in each row
    assert old.images is not None and old.images.shape == (7, 320, 320)
    assert old.pixel_size_angstrom == pytest.approx(5 * 1e4 / 38168)
    posed = read_particles(folder / "relion31.star")
    assert posed.euler_deg is not None
    np.testing.assert_allclose(posed.euler_deg[0], [-102.30296, 82.318041, 124.706463])
    np.testing.assert_allclose(posed.offsets_px[0], [0.019324 / 2.806, -0.64686 / 2.806])
    assert posed.half_set is not None and set(posed.half_set) <= {1, 2}
