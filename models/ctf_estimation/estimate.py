"""CTF estimation from a micrograph or a centred power spectrum: :func:`estimate_ctf`.

Steps: the averaged periodogram (:func:`power_spectrum`, unless ``is_power_spectrum``); a
smooth radial background (running mean of the log rotational average over CTFFIND's box, later
replaced by a windowed regression on the fitted model); a 1-D search over defocus (and phase
shift) on the rotational average; a grid search over astigmatism; then Levenberg-Marquardt
refinement of ``(d, a1, a2[, phi])`` of ``y = spectrum/background - 1`` against
``s(k) * -cos(2 chi + 2w)`` from the first Thon-ring zero, ``min_resolution`` or
``refine_min_resolution``, whichever is finest (the whole band when fitting a phase shift), to
``max_resolution``, which maximises the normalised cross-correlation (the figure of merit)
weighted by the ring amplitude. Inside the first zero, and at high defocus in the first lobe
beyond it, the particles' form factor biases the mean defocus low and shrinks the astigmatism;
starting the refinement at ``refine_min_resolution`` keeps most of it out (the README's
benchmark section gives the measured bias and precision of each start).

Support: besides a low figure of merit, unsupported Thon rings and aliasing, a fit is not supported
when the defocus is not uniquely determined: fewer than ``MIN_RING_PERIODS`` (3) ring periods
between the refinement's first frequency and the fit resolution, or another defocus (a local
maximum further than ``max(2 %, a quarter ring at the fit resolution)``) scoring at least
``MAX_COMPETITOR_RATIO`` (0.7) of the fit on that band (:mod:`models.ctf_estimation._support`).
Where the rings reach only a little way (a single heavily damaged frame), the curvature sigma says
nothing of fits far off, which these checks flag.

Uncertainties: the defocus, astigmatism, angle and phase sigmas come from the curvature of the
least-squares objective, ``sigma^2 (J^T J)^-1`` with ``sigma^2`` the measured residual variance and
every half-plane spectrum pixel one sample, propagated to ``(dU+dV)/2``, ``dU-dV`` and the angle;
the ice sigma is described in :mod:`models.ctf_estimation.ice`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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
from causalscope.models.ctf_estimation._support import Support, judge_support
from causalscope.models.ctf_estimation.ice import IceFit, estimate_ice_thickness
from causalscope.models.ctf_estimation.result import CtfEstimate
from causalscope.models.ctf_estimation.spectrum import power_spectrum, tile_window
from causalscope.models.units import ANGSTROM_PER_UM, electron_wavelength_angstrom

__all__ = ["auto_box_px", "estimate_ctf"]

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

    Method, support checks and uncertainties: see the module docstring.

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
        particles' share of the spectrum more weight.
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
        ``min_resolution``); capped at twice ``max_resolution``. A finer start keeps more of
        the particles' form factor out of the astigmatism and defocus fits and costs
        precision (the rings in between are lost).

    Returns
    -------
    CtfEstimate
    """
    options = _Options(
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
    if isinstance(box_px, str):
        if box_px != "auto":
            raise ValueError(f'box_px must be an even integer or "auto", got {box_px!r}')
        return _two_passes(image, options)
    return _one_pass(image, box_px, options)


@dataclass(frozen=True)
class _Options:
    """The keyword arguments of :func:`estimate_ctf` other than ``box_px``."""

    pixel_size_angstrom: float
    voltage_kv: float
    spherical_aberration_mm: float
    amplitude_contrast: float
    is_power_spectrum: bool
    min_resolution_angstrom: float
    max_resolution_angstrom: float
    defocus_min_um: float
    defocus_max_um: float
    estimate_phase_shift: bool
    noise_variance: float | None
    estimate_ice: bool
    refine_min_resolution_angstrom: float

    @property
    def defocus_range_angstrom(self) -> tuple[float, float]:
        return self.defocus_min_um * ANGSTROM_PER_UM, self.defocus_max_um * ANGSTROM_PER_UM


@dataclass(frozen=True)
class _Spectrum:
    """One pass's spectrum and the frequencies every step reads (1/A)."""

    full: Band  # the whole half plane
    band: Band  # min_resolution .. max_resolution
    in_band: torch.Tensor  # (m,) which pixels of ``full`` are in ``band``
    k_min: float
    k_max: float
    k_refine: float  # the refinement starts no coarser than this
    box_half: int  # half-width (spectrum px) of the running means, CTFFIND's box
    window: torch.Tensor | None  # (box,) tile window of the periodogram; None for a spectrum
    n_independent: float | None  # independent periodograms averaged; None for a spectrum


def _two_passes(image: torch.Tensor, options: _Options) -> CtfEstimate:
    """``box_px="auto"``: a pass at :data:`AUTO_FIRST_BOX_PX`, then one with a larger tile if
    the rings of that fit need it (:func:`auto_box_px`)."""
    first = _one_pass(image, AUTO_FIRST_BOX_PX, options)
    if options.is_power_spectrum or not first.supported:
        return first
    box = auto_box_px(
        max(first.defocus_u_angstrom, first.defocus_v_angstrom),
        short_side_px=min(image.shape[-2:]),
        pixel_size_angstrom=options.pixel_size_angstrom,
        voltage_kv=options.voltage_kv,
        max_resolution_angstrom=options.max_resolution_angstrom,
    )
    return first if box <= AUTO_FIRST_BOX_PX else _one_pass(image, box, options)


def _one_pass(image: torch.Tensor, box_px: int, options: _Options) -> CtfEstimate:
    """Validate, fit and judge with one periodogram tile size."""
    o = options
    optics = validate_inputs(
        image,
        pixel_size_angstrom=o.pixel_size_angstrom,
        voltage_kv=o.voltage_kv,
        spherical_aberration_mm=o.spherical_aberration_mm,
        amplitude_contrast=o.amplitude_contrast,
        is_power_spectrum=o.is_power_spectrum,
        min_resolution_angstrom=o.min_resolution_angstrom,
        max_resolution_angstrom=o.max_resolution_angstrom,
        defocus_min_um=o.defocus_min_um,
        defocus_max_um=o.defocus_max_um,
        noise_variance=o.noise_variance,
        refine_min_resolution_angstrom=o.refine_min_resolution_angstrom,
    )
    spec = _prepare_spectrum(image, box_px, o)
    params = _initial_parameters(spec, optics, o)
    fit, y_full, k_ref = _refine_twice(spec, params, optics, o)
    support = judge_support(
        spec.full,
        fit,
        y_full,
        optics,
        k_min=spec.k_min,
        k_max=spec.k_max,
        k_ref=k_ref,
        defocus_range_angstrom=o.defocus_range_angstrom,
        normalise_half_width=spec.box_half,
    )
    warnings = list(support.warnings)
    ice = _ice(spec, fit.params, optics, support, o, warnings)
    return _compose(fit, support, ice, warnings, o)


def _prepare_spectrum(image: torch.Tensor, box_px: int, o: _Options) -> _Spectrum:
    """The spectrum (the periodogram of ``image``, or ``image`` itself) and its bands."""
    window: torch.Tensor | None = None
    n_independent: float | None = None
    if o.is_power_spectrum:
        spectrum = image.to(torch.float64)
    else:
        box = min(box_px, 2 * (min(image.shape[-2:]) // 2))
        ps = power_spectrum(image, box_px=box, pixel_size_angstrom=o.pixel_size_angstrom)
        spectrum = ps.values.to(torch.float64)
        window = tile_window(box, taper_px=ps.taper_px, device=image.device)
        n_independent = ps.n_independent
    n = spectrum.shape[-1]
    apix = o.pixel_size_angstrom
    nyquist = 0.5 / apix
    k_min = 1.0 / o.min_resolution_angstrom
    k_max = min(1.0 / o.max_resolution_angstrom, 0.96 * nyquist)
    full = make_band(
        spectrum, pixel_size_angstrom=apix, k_min=1.0 / (n * apix), k_max=(n // 2 - 1) / (n * apix)
    )
    in_band = (full.k >= k_min) & (full.k <= k_max)
    return _Spectrum(
        full=full,
        band=full.subset(in_band),
        in_band=in_band,
        k_min=k_min,
        k_max=k_max,
        k_refine=min(1.0 / o.refine_min_resolution_angstrom, 0.5 * k_max),
        box_half=max(2, round(math.sqrt(2.0) * n * apix * k_min / 2)),
        window=window,
        n_independent=n_independent,
    )


def _initial_parameters(spec: _Spectrum, optics: Optics, o: _Options) -> torch.Tensor:
    """``[d, a1, a2, phi]`` from the 1-D search over the smooth background's rings, then the
    grid over astigmatism."""
    background = initial_background(spec.full, spec.box_half)
    y = (spec.full.values / background - 1.0)[spec.in_band]
    phases = (
        torch.deg2rad(torch.arange(0.0, 180.0, 5.0, dtype=torch.float64))
        if o.estimate_phase_shift
        else torch.zeros(1, dtype=torch.float64)
    )
    d_lo, d_hi = o.defocus_range_angstrom
    d0, phi0, _ = search_defocus_1d(
        spec.band,
        y,
        optics,
        defocus_min_angstrom=d_lo,
        defocus_max_angstrom=d_hi,
        phase_shifts_rad=phases,
        normalise_half_width=spec.box_half,
    )
    params = torch.tensor([d0, 0.0, 0.0, phi0], dtype=torch.float64)
    model = ring_model(spec.band, params, optics)
    weight = amplitude_profile(spec.band, y, model, half_width=spec.box_half)
    return search_astigmatism(
        spec.band,
        y,
        weight,
        optics,
        defocus_angstrom=d0,
        phase_shift_rad=phi0,
        max_half_astigmatism_angstrom=max(500.0, min(1500.0, 0.15 * d0)),
    )


def _refine_twice(
    spec: _Spectrum, params: torch.Tensor, optics: Optics, o: _Options
) -> tuple[Refinement, torch.Tensor, float]:
    """Two rounds of model background and refinement: ``(fit, y_full, k_ref)`` with ``y_full``
    the whole spectrum over the last background and ``k_ref`` where the last fit started."""
    fit: Refinement | None = None
    y_full = spec.full.values
    k_ref = spec.k_min
    for _ in range(2):
        background = _model_background(spec.full, params, optics)
        y_full = spec.full.values / background - 1.0
        y = y_full[spec.in_band]
        # inside the first Thon-ring zero the spectrum is dominated by the particles' form
        # factor (an apoferritin-like shell rings every ~4-5 spectrum px at 30-12 A), which
        # biases the defocus; the phase shift needs those rings, so it keeps the whole band
        k_ref = (
            spec.k_min
            if o.estimate_phase_shift
            else max(_first_zero_k(float(params[0]), optics, spec.k_min), spec.k_refine)
        )
        use = spec.band.k >= k_ref
        fit = refine(
            spec.band.subset(use), y[use], optics, params, fit_phase=o.estimate_phase_shift
        )
        params = fit.params
    if fit is None:
        raise RuntimeError("the refinement loop did not run")
    return fit, y_full, k_ref


def _ice(
    spec: _Spectrum,
    params: torch.Tensor,
    optics: Optics,
    support: Support,
    o: _Options,
    warnings: list[str],
) -> IceFit | None:
    """The ice thickness of a supported fit of a micrograph with a known noise floor, or None
    (with a warning where it was asked for but cannot be estimated)."""
    if not o.estimate_ice:
        return None
    if o.noise_variance is None:
        warnings.append("ice thickness not estimated: needs the noise variance (noise floor)")
        return None
    if o.is_power_spectrum or not support.supported:
        return None
    window = spec.window
    attenuation = _attenuation(spec.band, params, optics, window) if window is not None else 1.0
    ice = estimate_ice_thickness(
        spec.band,
        params,
        optics,
        noise_floor=float(o.noise_variance),
        attenuation=attenuation,
        n_independent=float(spec.n_independent or 1.0),
        full=spec.full,
        fit_k_max=support.k_used,
        dose_e_per_a2=float(o.noise_variance) / o.pixel_size_angstrom**2,
    )
    warnings.extend(ice.warnings)
    return ice


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
    fit: Refinement, support: Support, ice: IceFit | None, warnings: list[str], o: _Options
) -> CtfEstimate:
    """The estimate, with the parameters' covariance carried to U, V, astigmatism and angle."""
    params, k_fit = fit.params, support.k_fit
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
        search_defocus_min_um=o.defocus_min_um,
        search_defocus_max_um=o.defocus_max_um,
        at_search_edge=support.at_edge,
        supported=support.supported,
        warnings=tuple(warnings),
    )


def _first_zero_k(defocus_angstrom: float, optics: Optics, k_min: float) -> float:
    """Where the refinement band starts: the first zero of ``sin^2 chi`` (``lambda d k^2 = 1``,
    Cs and amplitude contrast neglected), or ``k_min`` if that is further out."""
    return max(k_min, 1.0 / math.sqrt(optics.wavelength_angstrom * max(defocus_angstrom, 1.0)))


def auto_box_px(
    defocus_angstrom: float,
    *,
    short_side_px: int,
    pixel_size_angstrom: float,
    voltage_kv: float,
    max_resolution_angstrom: float,
) -> int:
    """The tile of ``box_px="auto"``'s second pass for a fit whose larger defocus (``dU``) is
    ``defocus_angstrom``: the fit band's largest ring lag ``2 lambda dU k_max`` at most
    ``AUTO_MAX_LAG_FRACTION`` of the tile, in steps of 128 px, at least
    :data:`AUTO_FIRST_BOX_PX` and at most a quarter of the image's short side (enough tiles to
    average). Another image of the same exposure (a half sum) can be fitted at this tile in
    one pass."""
    k_max = min(1.0 / max_resolution_angstrom, 0.48 / pixel_size_angstrom)
    lag_px = (
        2.0
        * electron_wavelength_angstrom(voltage_kv)
        * defocus_angstrom
        * k_max
        / pixel_size_angstrom
    )
    wanted = 128 * math.ceil(lag_px / AUTO_MAX_LAG_FRACTION / 128)
    cap = 128 * (short_side_px // 4 // 128)
    return max(AUTO_FIRST_BOX_PX, min(wanted, cap))
