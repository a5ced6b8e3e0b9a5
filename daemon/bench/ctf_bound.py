"""The Cramér–Rao bound of a CTF fit for a simulated bench case: :func:`simulated_bound`.

The spectrum a fit sees is the periodogram of a Poisson frame: ``|FFT(expected)|^2 / n^2``
(the specimen's random ice and particles, through the CTF, envelopes and detector MTF) plus
white counting noise of variance ``mean(expected)`` per pixel. The still micrographs of the
bench are simulated without a ``DetectorTruth``: no gain spread, defects or hot pixels; the
detector MTF (:func:`models.simulate.detector.analytic_counting_mtf`) multiplies the signal
only, so the counting noise stays white (DQE = MTF^2), which is exactly a flat ``B`` term.
"""

from __future__ import annotations

from typing import Any

from causalscope.daemon.bench._common import CS_MM, VOLTAGE_KV, Q, still_parameters

__all__ = ["expected_spectrum", "simulated_bound"]

OPTICS = {
    "pixel_size_angstrom": 1.0,
    "voltage_kv": VOLTAGE_KV,
    "spherical_aberration_mm": CS_MM,
    "amplitude_contrast": Q,
}
GEOMETRY = ("defocus_u_angstrom", "defocus_v_angstrom", "defocus_angle_deg")


def expected_spectrum(size: int, case: dict[str, Any], *, n_specimens: int) -> tuple[Any, float]:
    """Mean ``rfft2`` periodogram (``|FFT|^2 / size^2``, float64) of ``n_specimens`` noise-free
    still micrographs of ``case`` (seeds ``case["seed"] + j``) and their mean count."""
    import torch

    from causalscope.models.simulate.exposure import simulate_exposure
    from causalscope.models.simulate.specimen import phantom_specimen

    total = torch.zeros(size, size // 2 + 1, dtype=torch.float64)
    mean = 0.0
    for j in range(n_specimens):
        params = still_parameters(
            size,
            particles_per_1024=40,
            seed=int(case["seed"]) + j,
            dose_e_per_a2=case["dose_e_per_a2"],
            ice_thickness_nm=case["ice_thickness_nm"],
            **{key: case[key] for key in GEOMETRY},
        )
        sim = simulate_exposure(params, specimen=phantom_specimen(), keep_expected=True)
        assert sim.expected_frames is not None
        image = torch.from_numpy(sim.expected_frames[0]).to(torch.float64)
        total += torch.fft.rfft2(image).abs() ** 2 / size**2
        mean += float(image.mean())
    return total / n_specimens, mean / n_specimens


def simulated_bound(
    size: int, case: dict[str, Any], *, n_specimens: int = 4, profile_size: int = 1024
) -> dict[str, Any]:
    """Cramér–Rao sds of mean defocus, ``dU - dV`` and angle for ``case`` on a ``size^2`` still.

    ``case`` is one of :func:`daemon.bench.ctf.simulated_cases` (40 particles per 1024^2, as
    the bench). The ensemble-mean spectrum comes from ``n_specimens`` noise-free simulations at
    ``profile_size``; :func:`models.ctf_estimation.bound.whittle_profiles` turns it and the
    Poisson floor (the mean count) into radial ``E(k)``, ``B(k)``. Those are per-pixel power
    spectral densities (the periodogram is normalised by ``n^2``), the same at any size, so
    profiles from 1024^2 serve 4096^2 where the rings are coarse. But a periodogram's rings are
    damped by its own (rectangular) window, by about ``1 - lag / n`` for a ring lag of ``2
    lambda d k`` px, so small profile images under-state ``E`` at high defocus and the bound they
    give for a larger image is conservative (too large; by how much: README, benchmark
    section). The specimen's spectrum is also taken as Gaussian (each periodogram value
    exponential), as Whittle's model requires.
    """
    from causalscope.models.ctf_estimation.bound import ctf_cramer_rao, whittle_profiles

    d_u, d_v, angle = (float(case[key]) for key in GEOMETRY)
    power, floor = expected_spectrum(profile_size, case, n_specimens=n_specimens)
    k, signal, background = whittle_profiles(
        power,
        floor,
        **OPTICS,
        defocus_u_angstrom=d_u,
        defocus_v_angstrom=d_v,
        defocus_angle_deg=angle,
        n_bins=None,
    )
    bound = ctf_cramer_rao(
        size,
        **OPTICS,
        defocus_u_angstrom=d_u,
        defocus_v_angstrom=d_v,
        defocus_angle_deg=angle,
        signal=signal,
        background=background,
        profile_k=k,
    )
    return bound.to_dict()
