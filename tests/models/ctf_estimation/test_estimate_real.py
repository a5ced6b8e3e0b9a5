"""estimate_ctf on the 12 real RELION-tutorial power spectra against CTFFIND-4.1."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest
import starfile
import torch

from causalscope.models.ctf_estimation import CtfEstimate, estimate_ctf

REAL = {
    "pixel_size_angstrom": 1.39955,
    "voltage_kv": 200.0,
    "spherical_aberration_mm": 1.4,
    "amplitude_contrast": 0.1,
}


def _spectra(shared_data: Path) -> list[tuple[str, torch.Tensor]]:
    folder = shared_data / "relion_tutorial" / "power_spectra"
    out = []
    for path in sorted(folder.glob("*_PS.mrc")):
        with mrcfile.open(path) as mrc:
            out.append((path.name, torch.from_numpy(np.array(mrc.data))))
    return out


def _fit(spectrum: torch.Tensor, **kw: float) -> CtfEstimate:
    return estimate_ctf(spectrum, is_power_spectrum=True, **REAL, **kw)  # type: ignore[arg-type]


def _reference(shared_data: Path, name: str) -> dict[str, dict[str, float]]:
    table = starfile.read(shared_data / "relion_tutorial" / name)["micrographs"]
    return {
        str(row.rlnMicrographName).split("/")[-1].replace(".mrc", "_PS.mrc"): row._asdict()
        for row in table.itertuples()
    }


def test_matches_ctffind_on_real_spectra(shared_data: Path) -> None:
    reference = _reference(shared_data, "ctffind4_reference.star")
    spectra = _spectra(shared_data)
    assert len(spectra) == 12
    print(
        "\nmicrograph  ours_df  ctffind_df  rel%  ours_ast ctffind_ast  d_angle  fom  res(ctffind)"
    )
    for name, spectrum in spectra:
        ref = reference[name]
        est = _fit(spectrum)
        mean_ref = 0.5 * (ref["rlnDefocusU"] + ref["rlnDefocusV"])
        dang = (est.defocus_angle_deg - ref["rlnDefocusAngle"] + 90) % 180 - 90
        print(
            f"{name[9:14]} {est.defocus_angstrom:9.0f} {mean_ref:9.0f} "
            f"{100 * (est.defocus_angstrom / mean_ref - 1):+6.2f} {est.astigmatism_angstrom:6.0f} "
            f"{ref['rlnDefocusU'] - ref['rlnDefocusV']:6.0f} {dang:+6.1f} "
            f"{est.figure_of_merit:.3f} "
            f"{est.fit_resolution_angstrom:.2f}({ref['rlnCtfMaxResolution']:.2f})"
        )
        assert est.supported, est.warnings
        assert est.defocus_angstrom == pytest.approx(mean_ref, rel=0.02)
        assert abs(dang) <= 10.0


def test_never_produces_ctffinds_wrong_answers(shared_data: Path) -> None:
    """With a 0.2-60 um search, every answer is the ~1 um one (CTFFIND's bad run said 31-50)."""
    reference = _reference(shared_data, "ctffind4_reference.star")
    wrong = _reference(shared_data, "ctffind4_wrong_fits.star")
    for name, spectrum in _spectra(shared_data):
        est = _fit(spectrum, defocus_max_um=60.0)
        ref = reference[name]
        mean_ref = 0.5 * (ref["rlnDefocusU"] + ref["rlnDefocusV"])
        if name in wrong:
            bad = 0.5 * (wrong[name]["rlnDefocusU"] + wrong[name]["rlnDefocusV"])
            assert abs(est.defocus_angstrom - bad) > 0.5 * bad
        if est.supported:
            assert est.defocus_angstrom == pytest.approx(mean_ref, rel=0.02)
        else:
            assert est.warnings


def test_a_wrong_defocus_forced_by_the_search_range_is_not_supported(shared_data: Path) -> None:
    """Forcing the search to 31-50 um (CTFFIND's failure) yields an unsupported, flagged fit."""
    for _, spectrum in _spectra(shared_data)[:4]:
        est = _fit(spectrum, defocus_min_um=31.0, defocus_max_um=50.0)
        assert not est.supported
        assert est.warnings
