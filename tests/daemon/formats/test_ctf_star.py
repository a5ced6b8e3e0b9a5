"""micrographs_ctf.star: written in RELION's layout, read back by starfile unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile

from causalscope.daemon.formats import write_micrographs_ctf_star

OPTICS = {
    "pixel_size_angstrom": 0.83,
    "voltage_kv": 300.0,
    "spherical_aberration_mm": 2.7,
    "amplitude_contrast": 0.07,
}


def _micrographs(n: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    u = rng.uniform(8_000, 25_000, n)
    return pd.DataFrame(
        {
            "micrograph_name": [f"MotionCorr/job002/m{i}_DW.mrc" for i in range(n)],
            "defocus_u_angstrom": u,
            "defocus_v_angstrom": u - rng.uniform(0, 800, n),
            "defocus_angle_deg": rng.uniform(-90, 90, n),
            "figure_of_merit": rng.uniform(0, 0.4, n),
            "fit_resolution_angstrom": rng.uniform(2.5, 8, n),
        }
    )


def test_round_trip(tmp_path: Path) -> None:
    micrographs = _micrographs().assign(
        motion_star=[f"motion/m{i}.star" for i in range(3)], ctf_image=["ps.ctf:mrc"] * 3
    )
    path = write_micrographs_ctf_star(tmp_path / "micrographs_ctf.star", OPTICS, micrographs)
    star = starfile.read(path)
    optics = star["optics"]
    assert optics["rlnOpticsGroupName"].tolist() == ["opticsGroup1"]
    assert optics["rlnOpticsGroup"].tolist() == [1]
    for label, value in [
        ("rlnMicrographOriginalPixelSize", 0.83),
        ("rlnMicrographPixelSize", 0.83),
        ("rlnVoltage", 300.0),
        ("rlnSphericalAberration", 2.7),
        ("rlnAmplitudeContrast", 0.07),
    ]:
        assert optics[label].tolist() == [pytest.approx(value)], label
    table = star["micrographs"]
    assert table["rlnMicrographName"].tolist() == micrographs["micrograph_name"].tolist()
    assert table["rlnMicrographMetadata"].tolist() == micrographs["motion_star"].tolist()
    assert table["rlnCtfImage"].tolist() == ["ps.ctf:mrc"] * 3
    assert table["rlnOpticsGroup"].tolist() == [1, 1, 1]
    for label, column in [
        ("rlnDefocusU", "defocus_u_angstrom"),
        ("rlnDefocusV", "defocus_v_angstrom"),
        ("rlnDefocusAngle", "defocus_angle_deg"),
        ("rlnCtfFigureOfMerit", "figure_of_merit"),
        ("rlnCtfMaxResolution", "fit_resolution_angstrom"),
    ]:
        np.testing.assert_allclose(table[label], micrographs[column], atol=1e-5, err_msg=label)
    np.testing.assert_allclose(
        table["rlnCtfAstigmatism"],
        micrographs["defocus_u_angstrom"] - micrographs["defocus_v_angstrom"],
        atol=1e-5,
    )
    assert "rlnPhaseShift" not in table  # all zero: left out
    assert not list(tmp_path.glob(".*.part"))


def test_two_optics_groups_and_a_phase_plate(tmp_path: Path) -> None:
    micrographs = _micrographs(4).assign(
        optics_group=[1, 2, 2, 1], phase_shift_deg=[0.0, 45.0, 60.0, 0.0]
    )
    second = {**OPTICS, "pixel_size_angstrom": 1.06, "name": "krios2"}
    path = write_micrographs_ctf_star(tmp_path / "m.star", [OPTICS, second], micrographs)
    star = starfile.read(path)
    assert star["optics"]["rlnOpticsGroupName"].tolist() == ["opticsGroup1", "krios2"]
    assert star["optics"]["rlnMicrographPixelSize"].tolist() == [
        pytest.approx(0.83),
        pytest.approx(1.06),
    ]
    assert star["micrographs"]["rlnOpticsGroup"].tolist() == [1, 2, 2, 1]
    np.testing.assert_allclose(star["micrographs"]["rlnPhaseShift"], [0, 45, 60, 0])


def test_no_micrographs_yet(tmp_path: Path) -> None:
    path = write_micrographs_ctf_star(tmp_path / "m.star", [], _micrographs(0))
    star = starfile.read(path)
    assert len(star["micrographs"]) == 0
    assert "rlnDefocusU" in star["micrographs"].columns


def test_bad_input_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "m.star"
    bad = _micrographs()
    bad.loc[1, "fit_resolution_angstrom"] = np.nan
    with pytest.raises(ValueError, match=r"fit_resolution_angstrom of micrograph .*m1_DW\.mrc"):
        write_micrographs_ctf_star(path, OPTICS, bad)
    with pytest.raises(ValueError, match="defocus_u"):
        write_micrographs_ctf_star(
            path, OPTICS, _micrographs().rename(columns={"defocus_u_angstrom": "defocus_u"})
        )
    with pytest.raises(ValueError, match="optics groups \\[3\\]"):
        write_micrographs_ctf_star(path, OPTICS, _micrographs().assign(optics_group=3))
    with pytest.raises(ValueError, match="voltage_kv"):
        write_micrographs_ctf_star(path, {**OPTICS, "voltage_kv": "300"}, _micrographs())
    assert not path.exists()
