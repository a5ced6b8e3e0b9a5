"""CTF estimation from a micrograph or a centred power spectrum: :func:`estimate_ctf`."""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch

from causalscope.models.ctf_estimation._fit import (
    Refinement,
    amplitude_profile,
    initial_background,
    model_background,
    refine,
    ring_period_px,
    search_astigmatism,
    search_defocus_1d,
)
from causalscope.models.ctf_estimation._inputs import validate_inputs
from causalscope.models.ctf_estimation._model import (
    Band,
    Optics,
    make_band,
    ring_lag_px,
    ring_model,
    window_attenuation,
)
from causalscope.models.ctf_estimation._quality import (
    alias_frequency,
    competing_defocus,
    fit_resolution,
    ring_periods,
)
from causalscope.models.ctf_estimation.ice import IceFit, estimate_ice_thickness
from causalscope.models.ctf_estimation.result import CtfEstimate
from causalscope.models.ctf_estimation.spectrum import power_spectrum, tile_window
from causalscope.models.units import ANGSTROM_PER_UM, electron_wavelength_angstrom

__all__ = ["estimate_ctf"]

#: figure of merit below which a fit is not supported, and the z-score floor for small bands
MIN_FIGURE_OF_MERIT = 0.05
MIN_FIT_Z = 10.0
#: a supported fit needs this many Thon-ring periods between the refinement's first frequency
#: and the fit resolution, and no defocus further than ``max(2 %, a quarter ring at the fit
#: resolution)`` away whose score (equiphase-averaged, RMS-normalised profile of that band)
#: reaches this fraction of the fit's
MIN_RING_PERIODS = 3.0
MAX_COMPETITOR_RATIO = 0.7
#: ``box_px="auto"``: the first pass's tile, and the largest lag of the fit band (the Thon
#: rings' real-space period at the high-resolution limit) as a fraction of the tile
AUTO_FIRST_BOX_PX = 512
AUTO_MAX_LAG_FRACTION = 0.25


def estimate_ctf(
    image: torch.Tensor,
    *,
    pixel_size_angstrom: float,
    voltage_kv: float,
    spherical_aberration_mm: float,
    amplitude_contrast: float,
    is_power_spectrum: bool = False,
    box_px: int | Literal["auto"] = 512,
    min_resolution_angstrom: float = 30.0,
    max_resolution_angstrom: float = 4.0,
    defocus_min_um: float = 0.2,
    defocus_max_um: float = 5.0,
    estimate_phase_shift: bool = False,
    noise_variance: float | None = None,
    estimate_ice: bool = True,
    refine_min_resolution_angstrom: float = 20.0,
) -> CtfEstimate:
    """Fit defocus, astigmatism, (phase shift), fit resolution and ice thickness.

    Steps: the averaged periodogram (:func:`power_spectrum`, unless ``is_power_spectrum``); a
    smooth radial background (running mean of the log rotational average over CTFFIND's box,
    later replaced by a windowed regression on the fitted model); a 1-D search over defocus
    (and phase shift) on the rotational average; a grid search over astigmatism; then
    Levenberg-Marquardt refinement of ``(d, a1, a2[, phi])`` of ``y = spectrum/background - 1``
    against ``s(k) * -cos(2 chi + 2w)`` from the first Thon-ring zero, ``min_resolution`` or
    ``refine_min_resolution``, whichever is finest (the whole band when fitting a phase shift),
    to ``max_resolution``, which maximises the normalised cross-correlation (the figure of
    merit) weighted by the ring amplitude. Inside the first zero, and at high defocus in the
    first lobe beyond it, the particles' form factor (20-30 % of the power at 30-15 A for an
    apoferritin-like shell in 60 nm of ice) biases the mean defocus low: -42 A on average at
    3 um on 4096^2 simulations when the refinement started at the first zero (24 A), -5 A
    from 20 A. The same signal between 20 and 16 A also shrinks the astigmatism: at 1.67 um
    (600 A astigmatism, 47 e/A^2, 62 nm ice, 40 particles per 1024^2) the expected noisy
    spectrum (periodogram of the noise-free 4096^2 image plus the Poisson floor) fits
    -7.5 A astigmatism and -12 A defocus from 20 A, +0.9 A and -2 A from 16 A; on the same
    image without particles the start changes nothing (+1.3 vs +1.1 A). Over 8 Poisson
    draws of that image the astigmatism moves by +8.6 +- 0.8 A (mean error -9 A to 0 A);
    at 2.7 um (first zero at 23 A) the expected spectrum's error stays within 3 A. The default
    still starts at 20 A: on 1024^2 single exposures the rings lost between 20 and 16 A cost
    more precision than the bias (median |defocus error| over 12 cases 10.8 -> 12.8 A).

    Support: besides a low figure of merit, unsupported Thon rings and aliasing, a fit is not
    supported when the defocus is not uniquely determined: fewer than
    :data:`MIN_RING_PERIODS` ring periods between the refinement's first frequency and the fit
    resolution, or another defocus (a local maximum further than ``max(2 %, a quarter ring at
    the fit resolution)``) scoring at least :data:`MAX_COMPETITOR_RATIO` of the fit on that
    band. A single 150 e/A^2 frame, damaged at its mid-frame dose, keeps rings only to ~12 A;
    the curvature sigma (~40 A) then says nothing of fits 500-12,000 A off, which these checks
    flag.

    Uncertainties: the defocus, astigmatism, angle and phase sigmas come from the curvature of
    the least-squares objective, ``sigma^2 (J^T J)^-1`` with ``sigma^2`` the measured residual
    variance and every half-plane spectrum pixel one sample, propagated to ``(dU+dV)/2``,
    ``dU-dV`` and the angle; the ice sigma is described in :mod:`models.ctf_estimation.ice`.

    Parameters
    ----------
    image
        ``(h, w)`` micrograph, or a centred ``(n, n)`` spectrum when ``is_power_spectrum``
        (power, amplitude or any monotonic rescaling whose background is smooth).
    pixel_size_angstrom
        Of the image (or the spectrum's effective pixel size: its sampling is
        ``1 / (n * pixel_size_angstrom)``).
    voltage_kv, spherical_aberration_mm, amplitude_contrast
        Optics.
    box_px
        Tile size of the periodogram (ignored for a spectrum), or ``"auto"``: a first pass
        at 512 px, then, if that fit is supported and the fit band's largest Thon-ring lag
        ``2 lambda dU k_max`` exceeds a quarter of that tile, a second pass with a tile four
        times that lag (in steps of 128 px, at most a quarter of the image's short side). A
        lag near the tile size damps the rings (the window's autocorrelation) and leaves the
        particles' share of the spectrum more weight: at 3 um on 4096^2 simulations the
        defocus error is -5 A at 512 px and -3 A (with less scatter) at 1024 px.
    min_resolution_angstrom, max_resolution_angstrom
        The fit band.
    defocus_min_um, defocus_max_um
        Search range of the mean defocus.
    estimate_phase_shift
        Fit a phase-plate phase shift in [0, 180) degrees.
    noise_variance
        Known white-noise variance per image pixel (Poisson counting: the mean count). Pins
        the spectrum's noise floor for the ice estimates; without it (and for spectra given
        directly) the ice thickness is not estimated.
    estimate_ice
        Estimate the ice thickness.
    refine_min_resolution_angstrom
        The refinement never starts coarser than this (nor than the first zero or
        ``min_resolution``); capped at twice ``max_resolution``. 16 A keeps the particles'
        form factor out of the astigmatism and defocus fits at the cost of precision (above).

    Returns
    -------
    CtfEstimate
    """
    if isinstance(box_px, str):
        if box_px != "auto":
            raise ValueError(f'box_px must be an even integer or "auto", got {box_px!r}')
        run_pass = functools.partial(
            estimate_ctf,
            image,
            pixel_size_angstrom=pixel_size_angstrom,
            voltage_kv=voltage_kv,
            spherical_aberration_mm=spherical_aberration_mm,
            amplitude_contrast=amplitude_contrast,
            is_power_spectrum=is_power_spectrum,
            min_resolution_angstrom=min_resolution_angstrom,
            max_resolution_angstrom=max_resolution_angstrom,
            defocus_min_um=defocus_min_um,
            defocus_max_um=defocus_max_um,
            estimate_phase_shift=estimate_phase_shift,
            noise_variance=noise_variance,
            estimate_ice=estimate_ice,
            refine_min_resolution_angstrom=refine_min_resolution_angstrom,
        )
        first = run_pass(box_px=AUTO_FIRST_BOX_PX)
        if is_power_spectrum or not first.supported:
            return first
        box = _auto_box_px(
            first,
            short_side_px=min(image.shape[-2:]),
            pixel_size_angstrom=pixel_size_angstrom,
            voltage_kv=voltage_kv,
            max_resolution_angstrom=max_resolution_angstrom,
        )
        return first if box <= AUTO_FIRST_BOX_PX else run_pass(box_px=box)
    optics = validate_inputs(
        image,
        pixel_size_angstrom=pixel_size_angstrom,
        voltage_kv=voltage_kv,
        spherical_aberration_mm=spherical_aberration_mm,
        amplitude_contrast=amplitude_contrast,
        is_power_spectrum=is_power_spectrum,
        min_resolution_angstrom=min_resolution_angstrom,
        max_resolution_angstrom=max_resolution_angstrom,
        defocus_min_um=defocus_min_um,
        defocus_max_um=defocus_max_um,
        noise_variance=noise_variance,
        refine_min_resolution_angstrom=refine_min_resolution_angstrom,
    )
    warnings: list[str] = []
    window: torch.Tensor | None = None
    n_independent: float | None = None
    if is_power_spectrum:
        spectrum = image.to(torch.float64)
    else:
        box = min(box_px, 2 * (min(image.shape[-2:]) // 2))
        ps = power_spectrum(image, box_px=box, pixel_size_angstrom=pixel_size_angstrom)
        spectrum = ps.values.to(torch.float64)
        window = tile_window(box, taper_px=ps.taper_px, device=image.device)
        n_independent = ps.n_independent
    n = spectrum.shape[-1]
    apix = pixel_size_angstrom
    nyquist = 0.5 / apix
    k_min = 1.0 / min_resolution_angstrom
    k_max = min(1.0 / max_resolution_angstrom, 0.96 * nyquist)
    full = make_band(
        spectrum, pixel_size_angstrom=apix, k_min=1.0 / (n * apix), k_max=(n // 2 - 1) / (n * apix)
    )
    in_band = (full.k >= k_min) & (full.k <= k_max)
    k_refine = min(1.0 / refine_min_resolution_angstrom, 0.5 * k_max)

    # --- 1. background, 1-D search
    box_half = max(2, round(math.sqrt(2.0) * n * apix * k_min / 2))
    background = initial_background(full, box_half)
    y_full = full.values / background - 1.0
    band = full.subset(in_band)
    phases = (
        torch.deg2rad(torch.arange(0.0, 180.0, 5.0, dtype=torch.float64))
        if estimate_phase_shift
        else torch.zeros(1, dtype=torch.float64)
    )
    d0, phi0, _ = search_defocus_1d(
        band,
        y_full[in_band],
        optics,
        defocus_min_angstrom=defocus_min_um * ANGSTROM_PER_UM,
        defocus_max_angstrom=defocus_max_um * ANGSTROM_PER_UM,
        phase_shifts_rad=phases,
        normalise_half_width=box_half,
    )
    params = torch.tensor([d0, 0.0, 0.0, phi0], dtype=torch.float64)

    # --- 2. astigmatism grid, model background, refinement
    y = y_full[in_band]
    weight = amplitude_profile(band, y, ring_model(band, params, optics), half_width=box_half)
    max_half = max(500.0, min(1500.0, 0.15 * d0))
    params = search_astigmatism(
        band,
        y,
        weight,
        optics,
        defocus_angstrom=d0,
        phase_shift_rad=phi0,
        max_half_astigmatism_angstrom=max_half,
    )
    fit = None
    k_ref = k_min
    for _ in range(2):
        background = _model_background(full, params, optics)
        y_full = full.values / background - 1.0
        y = y_full[in_band]
        # inside the first Thon-ring zero the spectrum is dominated by the particles' form
        # factor (an apoferritin-like shell rings every ~4-5 spectrum px at 30-12 A), which
        # biases the defocus; the phase shift needs those rings, so it keeps the whole band
        k_ref = (
            k_min
            if estimate_phase_shift
            else max(_first_zero_k(float(params[0]), optics, k_min), k_refine)
        )
        use = band.k >= k_ref
        fit = refine(band.subset(use), y[use], optics, params, fit_phase=estimate_phase_shift)
        params = fit.params
    assert fit is not None

    # --- 3. quality: fit resolution, aliasing, figure of merit
    k_fit, _ = fit_resolution(full, y_full, params, optics, k_start=k_min)
    k_alias = alias_frequency(params, optics, n=n, pixel_size_angstrom=apix)
    supported = True
    z = fit.cc * math.sqrt(fit.n_pixels)
    if fit.cc < MIN_FIGURE_OF_MERIT or z < MIN_FIT_Z:
        supported = False
        warnings.append(
            f"figure of merit {fit.cc:.3f} is too low (needs >= {MIN_FIGURE_OF_MERIT}, "
            f"z >= {MIN_FIT_Z:.0f}; z = {z:.1f})"
        )
    if k_fit is None or k_fit < 1.5 * k_min:
        supported = False
        warnings.append("the Thon rings are not supported beyond the low-resolution limit")
    k_used = min(k_fit if k_fit is not None else k_min, k_max)
    d_fit = float(params[0])
    periods = ring_periods(d_fit, optics, k_ref, k_used)
    separation = max(0.02 * d_fit, 0.5 / (optics.wavelength_angstrom * k_used * k_used))
    comp = competing_defocus(
        full,
        y_full,
        params,
        optics,
        k_lo=k_ref,
        k_hi=k_used,
        defocus_min_angstrom=defocus_min_um * ANGSTROM_PER_UM,
        defocus_max_angstrom=defocus_max_um * ANGSTROM_PER_UM,
        separation_angstrom=separation,
        normalise_half_width=box_half,
    )
    if periods < MIN_RING_PERIODS:
        supported = False
        warnings.append(
            f"the refined band from {1 / k_ref:.1f} A to the fit resolution "
            f"{1 / k_used:.1f} A spans {max(periods, 0.0):.1f} Thon-ring periods at "
            f"{d_fit:.0f} A (needs >= {MIN_RING_PERIODS:g}): too few to determine the defocus"
        )
    if comp is not None and comp[2] > MAX_COMPETITOR_RATIO * comp[0]:
        supported = False
        warnings.append(
            f"ambiguous defocus: {comp[1]:.0f} A scores {comp[2]:.2f} against {comp[0]:.2f} "
            f"at the fitted {d_fit:.0f} A (needs < {MAX_COMPETITOR_RATIO:g} of it) on the "
            f"rings from {1 / k_ref:.1f} to {1 / k_used:.1f} A"
        )
    if k_alias is not None and k_alias <= k_used:
        msg = (
            f"Thon rings alias (period < 2 spectrum px) beyond {1 / k_alias:.1f} A "
            f"at box {n} and {apix:g} A/px"
        )
        if k_alias < 0.5 * k_max:
            supported = False
            msg += ": over more than half the fit band, this defocus cannot be sampled at this box"
        warnings.append(msg)
    d_lo, d_hi = defocus_min_um * ANGSTROM_PER_UM, defocus_max_um * ANGSTROM_PER_UM
    margin = min(0.02 * (d_hi - d_lo), 0.1 * d_lo + 200.0)
    at_edge = bool(float(params[0]) < d_lo + margin or float(params[0]) > d_hi - margin)
    if at_edge:
        warnings.append(
            f"mean defocus {float(params[0]):.0f} A is at the edge of the search range "
            f"[{d_lo:.0f}, {d_hi:.0f}] A"
        )

    # --- 4. ice
    ice: IceFit | None = None
    if estimate_ice and noise_variance is not None and not is_power_spectrum and supported:
        attenuation = _attenuation(band, params, optics, window) if window is not None else 1.0
        ice = estimate_ice_thickness(
            band,
            params,
            optics,
            noise_floor=float(noise_variance),
            attenuation=attenuation,
            n_independent=float(n_independent or 1.0),
            full=full,
            fit_k_max=k_used,
            dose_e_per_a2=float(noise_variance) / apix**2,
        )
        warnings.extend(ice.warnings)
    elif estimate_ice and noise_variance is None:
        warnings.append("ice thickness not estimated: needs the noise variance (noise floor)")

    return _compose(
        fit,
        params,
        optics,
        k_fit,
        ice,
        supported,
        at_edge,
        warnings,
        defocus_min_um,
        defocus_max_um,
    )


def _model_background(full: Band, params: torch.Tensor, optics: Optics) -> torch.Tensor:
    k_rings = torch.arange(full.n_rings, dtype=torch.float64) / (full.n * full.pixel_size_angstrom)
    period = ring_period_px(full.n, k_rings, float(params[0]), optics, full.pixel_size_angstrom)
    half = torch.clamp(torch.ceil(period), min=2, max=40).long()
    return model_background(full, ring_model(full, params, optics), half)


def _attenuation(
    band: Band, params: torch.Tensor, optics: Optics, window: torch.Tensor
) -> torch.Tensor:
    lag = ring_lag_px(band, params, optics)
    return window_attenuation(lag * band.cos1, lag * band.sin1, window)


def _compose(
    fit: Refinement,
    params: torch.Tensor,
    optics: Optics,
    k_fit: float | None,
    ice: IceFit | None,
    supported: bool,
    at_edge: bool,
    warnings: list[str],
    defocus_min_um: float,
    defocus_max_um: float,
) -> CtfEstimate:
    cov = torch.zeros(4, 4, dtype=torch.float64)
    idx = torch.tensor(fit.free)
    cov[idx[:, None], idx[None, :]] = fit.covariance.cpu()  # a 4 x 4 read as floats below
    d, a1, a2, phi = (float(v) for v in params)
    half = math.hypot(a1, a2)
    block = cov[1:3, 1:3]
    if half > 1e-6:
        g = torch.tensor([a1, a2], dtype=torch.float64) / half
        perp = torch.tensor([-a2, a1], dtype=torch.float64) / half
        sigma_half = float(g @ block @ g) ** 0.5
        sigma_perp = float(perp @ block @ perp) ** 0.5
        sigma_angle = min(math.degrees(sigma_perp / (2.0 * half)), 180.0 / math.sqrt(12.0))
    else:
        sigma_half = float(torch.trace(block) / 2) ** 0.5
        sigma_angle = 180.0 / math.sqrt(12.0)
    angle = (math.degrees(math.atan2(a2, a1)) / 2.0) % 180.0
    phase_deg = math.degrees(phi) % 180.0
    return CtfEstimate(
        defocus_u_angstrom=d + half,
        defocus_v_angstrom=d - half,
        defocus_angle_deg=angle,
        phase_shift_deg=phase_deg,
        fit_resolution_angstrom=None if k_fit is None else 1.0 / k_fit,
        figure_of_merit=fit.cc,
        ice_thickness_nm=None if ice is None else ice.thickness_nm,
        ice_thickness_rings_nm=None if ice is None else ice.rings_nm,
        ice_thickness_ice_ring_nm=None if ice is None else ice.ice_ring_nm,
        defocus_sigma_angstrom=float(cov[0, 0]) ** 0.5,
        astigmatism_sigma_angstrom=2.0 * sigma_half,
        angle_sigma_deg=sigma_angle,
        phase_shift_sigma_deg=math.degrees(float(cov[3, 3]) ** 0.5) if 3 in fit.free else None,
        ice_thickness_sigma_nm=None if ice is None else ice.sigma_nm,
        search_defocus_min_um=defocus_min_um,
        search_defocus_max_um=defocus_max_um,
        at_search_edge=at_edge,
        supported=supported,
        warnings=tuple(warnings),
    )


def _first_zero_k(defocus_angstrom: float, optics: Optics, k_min: float) -> float:
    """Where the refinement band starts: the first zero of ``sin^2 chi`` (``lambda d k^2 = 1``,
    Cs and amplitude contrast neglected), or ``k_min`` if that is further out."""
    return max(k_min, 1.0 / math.sqrt(optics.wavelength_angstrom * max(defocus_angstrom, 1.0)))


def _auto_box_px(
    first: CtfEstimate,
    *,
    short_side_px: int,
    pixel_size_angstrom: float,
    voltage_kv: float,
    max_resolution_angstrom: float,
) -> int:
    """Tile for the second pass of ``box_px="auto"``: the fit band's largest ring lag
    ``2 lambda dU k_max`` at most ``AUTO_MAX_LAG_FRACTION`` of the tile, in steps of 128 px,
    and at most a quarter of the image's short side (enough tiles to average)."""
    k_max = min(1.0 / max_resolution_angstrom, 0.48 / pixel_size_angstrom)
    lag_px = (
        2.0
        * electron_wavelength_angstrom(voltage_kv)
        * max(first.defocus_u_angstrom, first.defocus_v_angstrom)
        * k_max
        / pixel_size_angstrom
    )
    wanted = 128 * math.ceil(lag_px / AUTO_MAX_LAG_FRACTION / 128)
    cap = 128 * (short_side_px // 4 // 128)
    return max(AUTO_FIRST_BOX_PX, min(wanted, cap))
