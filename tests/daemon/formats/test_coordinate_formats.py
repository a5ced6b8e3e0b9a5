"""Picks written by other tools, read as pixels of the micrograph: Topaz's, EMAN2/crYOLO box
files, cryoSPARC particle files and RELION particle STAR files naming several micrographs; a
clear error naming the file for each kind of bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile

from causalscope.daemon.formats.coordinates import (
    coordinates_by_micrograph,
    named_micrographs,
    read_coordinates,
    read_scored_coordinates,
)
from causalscope.models.errors import FormatError

#: where the particles are, in pixels of a 4092 x 5760 (rows x columns) micrograph
TRUE_XY = np.array([[2880.0, 1023.0], [576.0, 3682.8], [5000.5, 17.25]])
SHAPE = (4092, 5760)


def _cs(path: Path, names: list[str], xy: np.ndarray, shape: tuple[int, int]) -> Path:
    """A cryoSPARC particle file: shares of the micrograph and its shape as (ny, nx)."""
    dtype = np.dtype(
        [
            ("uid", "<u8"),
            ("location/micrograph_path", "S96"),
            ("location/center_x_frac", "<f4"),
            ("location/center_y_frac", "<f4"),
            ("location/micrograph_shape", "<u4", (2,)),
        ]
    )
    table = np.zeros(len(names), dtype)
    table["location/micrograph_path"] = [n.encode() for n in names]
    table["location/center_x_frac"] = xy[:, 0] / shape[1]
    table["location/center_y_frac"] = xy[:, 1] / shape[0]
    table["location/micrograph_shape"] = shape
    with path.open("wb") as handle:
        np.save(handle, table)
    return path


def test_cryosparc_shares_fit_the_micrograph_at_any_binning(tmp_path: Path) -> None:
    """x = center_x_frac * nx and y = center_y_frac * ny with ``micrograph_shape`` = (ny, nx)
    (pyem's csparc2star rule): on a micrograph that is not square, swapping them would put
    every pick elsewhere. Given the micrograph's own shape (binned by 4), the same shares fit
    it: the coordinates are a quarter."""
    names = ["J3/motioncorrected/0123456_FoilHole_7_Data_8_patch_aligned_doseweighted.mrc"] * 3
    path = _cs(tmp_path / "particles.cs", names, TRUE_XY, SHAPE)
    np.testing.assert_allclose(read_coordinates(path), TRUE_XY, atol=2e-3)
    binned = read_coordinates(path, shape=(SHAPE[0] // 4, SHAPE[1] // 4))
    np.testing.assert_allclose(binned, TRUE_XY / 4, atol=1e-3)


def test_a_file_of_several_micrographs_gives_the_exposures_rows(tmp_path: Path) -> None:
    """cryoSPARC's uid prefix and ``_doseweighted`` ending, RELION's job folders, Topaz's bare
    names: the exposure ``FoilHole_7_Data_8`` (its sum ``FoilHole_7_Data_8_DW.mrc``) finds its
    rows, and not those of ``FoilHole_7_Data_80``."""
    mine, other = "FoilHole_7_Data_8", "FoilHole_7_Data_80"
    sum_path = f"session/micrographs/{mine}_DW.mrc"
    cs_names = [f"J3/mc/0{i}_{n}_patch_aligned_doseweighted.mrc" for i, n in enumerate(
        [mine, other, mine])]  # fmt: skip
    cs = _cs(tmp_path / "p.cs", cs_names, TRUE_XY, SHAPE)
    np.testing.assert_allclose(
        read_coordinates(cs, micrograph=sum_path), TRUE_XY[[0, 2]], atol=2e-3
    )
    star = tmp_path / "particles.star"
    table = pd.DataFrame(
        {
            "rlnMicrographName": [f"MotionCorr/job002/Movies/{n}.mrc" for n in (other, mine)],
            "rlnCoordinateX": [1.0, 2.0],
            "rlnCoordinateY": [3.0, 4.0],
        }
    )
    starfile.write({"particles": table}, star)
    np.testing.assert_allclose(read_coordinates(star, micrograph=sum_path), [[2.0, 4.0]])
    topaz = tmp_path / "picks.txt"
    topaz.write_text(
        "image_name\tx_coord\ty_coord\tscore\n"
        f"{mine}\t10\t20\t1.5\n{other}\t30\t40\t2.0\n{mine}\t5\t6\t-0.5\n"
    )
    np.testing.assert_allclose(read_coordinates(topaz, micrograph=sum_path), [[10, 20], [5, 6]])
    scored = read_scored_coordinates(topaz, micrograph=sum_path)
    assert scored.scores is not None
    np.testing.assert_array_equal(scored.scores, [1.5, -0.5])
    grouped = coordinates_by_micrograph(topaz)
    assert sorted(grouped) == sorted([mine, other])
    np.testing.assert_array_equal(grouped[other].xy_px, [[30, 40]])
    np.testing.assert_array_equal(grouped[mine].scores, [1.5, -0.5])
    assert read_scored_coordinates(star, micrograph=sum_path).scores is None  # none in the file
    assert all(p.scores is None for p in coordinates_by_micrograph(cs).values())
    for path in (cs, star, topaz):  # what a session's labels folder matches exposures by
        assert {mine, other} <= named_micrographs(path)
        assert "FoilHole_7_Data_9" not in named_micrographs(path)
    assert named_micrographs(tmp_path / "missing.star") == set()
    with pytest.raises(FormatError, match="give the micrograph") as error:
        read_coordinates(topaz)
    assert str(topaz) in str(error.value)
    with pytest.raises(FormatError, match="none of them 'FoilHole_9'") as error:
        read_coordinates(cs, micrograph="FoilHole_9.mrc")
    assert str(cs) in str(error.value)


def test_box_files_give_the_centre_of_each_box(tmp_path: Path) -> None:
    """EMAN2 (``x y w h``, tabs) and crYOLO (a fifth column, spaces): lower-left corner plus
    half the box."""
    box = tmp_path / "mic.box"
    box.write_text("100\t200\t128\t128\n\n10 20 64 96 0.87\n")
    np.testing.assert_allclose(read_coordinates(box), [[164.0, 264.0], [42.0, 68.0]])
    with pytest.raises(FormatError, match="does not say which micrograph") as error:
        coordinates_by_micrograph(box)
    assert str(box) in str(error.value)
    box.write_text("100 200 128\n")
    with pytest.raises(FormatError, match="width and height") as error:
        read_coordinates(box)
    assert str(box) in str(error.value)
    box.write_text("100 200 0 128\n")
    with pytest.raises(FormatError, match="positive, found 0"):
        read_coordinates(box)


def test_a_cryosparc_file_without_locations_is_refused(shared_data: Path) -> None:
    """A real cryoSPARC particle file of extracted images (``blob/*`` only, no
    ``location/*``): a clear error naming the file and what is missing."""
    path = shared_data / "star" / "cryosparc_P12_J24_001_particles.cs"
    if not path.is_file():
        pytest.skip(f"{path} is not in ../shared")
    with pytest.raises(FormatError, match="location/center_x_frac") as error:
        read_coordinates(path)
    assert str(path) in str(error.value)


def test_the_trainer_reads_a_cryosparc_file_as_the_same_picks(tmp_path: Path) -> None:
    """The session's trainer given the exposure's picks as a cryoSPARC file (shares of the
    unbinned 4x larger micrograph, another exposure's rows beside them) and as a STAR file of
    pixels of the sum: the same labels."""
    from causalscope.actors.picker_trainer import PickerTrainer
    from causalscope.daemon.formats import write_mrc_movie

    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, 256, 320)).astype(np.float32)
    micrograph = write_mrc_movie(tmp_path / "mic_DW.mrc", image, pixel_size_angstrom=4.0)
    xy = np.array([[40.5, 50.25], [200.0, 180.0], [300.0, 30.0]])
    star = tmp_path / "mic.star"
    starfile.write({"": pd.DataFrame({"rlnCoordinateX": xy[:, 0], "rlnCoordinateY": xy[:, 1]})},
                   star)  # fmt: skip
    names = ["J2/mc/01_mic_doseweighted.mrc"] * 3 + ["J2/mc/02_other_doseweighted.mrc"]
    both = np.concatenate([xy, [[10.0, 10.0]]]) * 4
    cs = _cs(tmp_path / "mic.cs", names, both, (256 * 4, 320 * 4))
    trainer = PickerTrainer()
    from_star = trainer.add_labelled_files("mic", str(micrograph), str(star), 120.0)
    first = trainer.labelled["mic"].xy_canonical.clone()
    from_cs = trainer.add_labelled_files("mic", str(micrograph), str(cs), 120.0)
    assert from_star == from_cs == {"labelled": 1.0, "picks": 3.0}
    np.testing.assert_allclose(trainer.labelled["mic"].xy_canonical, first, atol=1e-3)
