"""Ice thickness from the Thon rings' modulation and from the 3.7 A ice-ring power.

Ring modulation (CTFFIND5's idea, derived for a uniform slab): scatterers spread uniformly
through ice of thickness ``t`` are transferred at defocus ``d + z``, ``z`` uniform in
``[-t/2, t/2]``; averaging ``sin^2(chi + pi lam k^2 z + w)`` over z gives

    PS(k) = F + A(k)/2 [1 - m(k) cos(2 chi + 2 w)],   m(k) = sinc(lam k^2 t)

(normalised sinc), with F the white noise floor. Given F (the known noise variance), each ring
of pixels fixes ``A/2`` (its mean above F) and ``A m / 2`` (its oscillation), so ``m`` and hence
``t`` are measured without knowing the envelope. The tile window's damping of fine rings is
modelled separately (``attenuation``). ``t`` is found on a grid by weighted least squares
(periodogram variance ``P^2 / n_independent``), its sigma from ``delta chi^2 = 1`` scaled by the
reduced chi^2 when that exceeds 1: the larger of the curvature's and half the profile interval
(every thickness that close to the best), so a flat or two-minimum profile gets a wide sigma.
At the grid's bottom (0 nm) the rings give only an upper limit (the interval's top), which is
no estimate of the thickness: it is kept as a bound and the ice ring alone gives the value;
at the grid's top (200 nm) the rings do not measure the ice and only the ice ring counts.

Ice-ring power: the excess power in the 3.7 A band over a straight line through its flanks is
``P_el(t)^2 t`` times the same excess of the signal that 1 A of vitreous ice would give, with
``P_el = exp(-t / Lambda_in)`` (no energy filter: inelastic electrons are counted but carry no
contrast). That prediction needs the absolute envelope at 3.7 A: the dose-damage envelope of an
unweighted sum is computed from the dose (``noise_variance / apix^2`` for counting at unit
gain), the rest (MTF, B-factor, coherence) is a Gaussian ``exp(-beta k^2)`` fitted to the ring
amplitudes ``A(k)`` of the modulation fit and extrapolated with ``R(0) = 1``. Its sigma adds
the statistical error of the band power and a 100 % systematic term (the envelope
extrapolation and the particles' share of ``A(k)`` make the ice-ring estimate scatter by a
factor of a few either way), so it mostly arbitrates where the rings are uninformative.

The two are combined by inverse-variance weighting; a warning is raised when they differ by
more than 3 combined sigma, and the thickness is not reported (a warning says so) when the
combined sigma exceeds :data:`MAX_ICE_SIGMA_NM`. How well the sigmas describe the errors is
measured by ``causalscope bench ctf`` (README, benchmark section).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from causalscope.models.ctf_estimation._model import Band, Optics, phase, ring_sums
from causalscope.models.dose import critical_exposure_e_per_a2
from causalscope.models.simulate.exposure import inelastic_mean_free_path_nm
from causalscope.models.simulate.specimen import ICE_RING_FREQUENCY_PER_ANGSTROM, water_phase_psd
from causalscope.models.units import ANGSTROM_PER_NM

__all__ = ["IceFit", "estimate_ice_thickness", "ice_modulation"]

_T_GRID_NM = torch.arange(0.0, 200.01, 2.0, dtype=torch.float64)
_ICE_RING_HALF_WIDTH = 0.025
_FLANK = (0.035, 0.065)
_ICE_RING_SYSTEMATIC = 1.0
#: a combined sigma above this (half the grid) is no measurement: the thickness is not reported
MAX_ICE_SIGMA_NM = 100.0
#: the ice-ring estimate's sigma never falls below this: its relative systematic term vanishes
#: near 0 nm, where the estimate also lands for ice tens of nm thick (README, benchmark section)
_ICE_RING_MIN_SIGMA_NM = 40.0


@dataclass(frozen=True)
class IceFit:
    """Ice thickness estimates (nm) and their 1-sigma uncertainties; None where unmeasured."""

    thickness_nm: float | None
    rings_nm: float | None
    ice_ring_nm: float | None
    sigma_nm: float | None
    rings_sigma_nm: float | None = None
    ice_ring_sigma_nm: float | None = None
    warnings: tuple[str, ...] = ()


def ice_modulation(
    frequency_per_angstrom: torch.Tensor, *, thickness_nm: float | torch.Tensor, voltage_kv: float
) -> torch.Tensor:
    """Thon-ring modulation ``sinc(lambda k^2 t)`` of ice of thickness t; broadcasts."""
    from causalscope.models.units import electron_wavelength_angstrom

    lam = electron_wavelength_angstrom(voltage_kv)
    like = frequency_per_angstrom
    t = torch.as_tensor(thickness_nm, dtype=like.dtype, device=like.device) * ANGSTROM_PER_NM
    return torch.sinc(lam * frequency_per_angstrom**2 * t)


def _rings_fit(
    band: Band,
    params: torch.Tensor,
    optics: Optics,
    *,
    noise_floor: float,
    attenuation: torch.Tensor | float,
    n_independent: float,
) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """Grid + parabola fit of t; returns ``(t_nm, sigma_nm, ring_k, ring_amplitude)``.

    ``sigma_nm`` is infinite where the rings do not measure the ice (the grid's top) and
    negative where they give only an upper limit, ``-sigma_nm`` (the grid's bottom).
    """
    signal = band.values - noise_floor
    cos2 = torch.cos(2.0 * phase(band.k, band.cos2, band.sin2, params, optics))
    n_rings = band.n_rings
    counts = ring_sums(torch.ones_like(signal), band.ring, n_rings)
    mean_p = ring_sums(band.values, band.ring, n_rings) / counts.clamp(min=1)
    weight = n_independent / mean_p.clamp(min=1e-30) ** 2  # 1 / variance per pixel, per ring
    grid = _T_GRID_NM.to(band.k.device)  # the spectrum's device (a GPU's, in the worker)
    # per ring, with x = attenuation * cos 2chi and the modulation m(t, |k|):
    # sum g^2 = (N - 2 sum m x + sum m^2 x^2) / 4 and sum s g = (sum s - sum m s x) / 2. m
    # depends on |k| alone, which a ring's pixels share a few at a time (a sixth as many
    # distinct |k| as pixels at 512 px), so each sum over x first adds the pixels of one |k|
    k, which = torch.unique(band.k, return_inverse=True)
    ring = torch.zeros_like(which[: k.numel()]).scatter_(0, which, band.ring)
    x = attenuation * cos2
    per_k = torch.zeros(3, k.numel(), dtype=x.dtype, device=x.device)
    per_k.index_add_(1, which, torch.stack([x, x * x, signal * x]))
    m = ice_modulation(k, thickness_nm=grid[:, None], voltage_kv=optics.voltage_kv)  # (T, k)
    mx, mmxx = ring_sums(m * per_k[0], ring, n_rings), ring_sums(m * m * per_k[1], ring, n_rings)
    sgg = 0.25 * (counts - 2.0 * mx + mmxx)
    ssg = 0.5 * (ring_sums(signal, band.ring, n_rings) - ring_sums(m * per_k[2], ring, n_rings))
    amp = ssg / sgg.clamp(min=1e-30)  # (T, rings): A per ring
    rss = ring_sums(signal * signal, band.ring, n_rings) - amp * ssg
    chi2 = (rss * weight).sum(-1)
    i = int(torch.argmin(chi2))
    t = float(_T_GRID_NM[i])
    step = float(_T_GRID_NM[1] - _T_GRID_NM[0])
    dof = max(1, signal.numel() - int((counts > 0).sum()) - 1)
    scale = max(1.0, float(chi2[i]) / dof)
    # the profile interval: every thickness within delta chi^2 <= scale of the best; where the
    # profile is flat or has a second minimum, it is wider than the curvature says
    inside = grid[chi2 - chi2[i] <= scale]
    lo, hi = float(inside.min()), float(inside.max())
    if i == len(_T_GRID_NM) - 1:
        # at the grid's top: not a measurement (the rings damped by something else)
        sigma = float("inf")
    elif i == 0:
        # one-sided: thinner than ``hi``. A negative sigma marks the upper limit ``-sigma``:
        # weighting 0 +- hi as a measurement reported 0.05 nm for 31 nm of ice
        sigma = -max(hi, step / 2.0)
    else:
        c0, c1, c2 = (float(chi2[j]) for j in (i - 1, i, i + 1))
        curv = (c0 - 2 * c1 + c2) / step**2
        if curv > 0:
            t += 0.5 * step * (c0 - c2) / (c0 - 2 * c1 + c2)
            sigma = max(math.sqrt(2.0 * scale / curv), 0.5 * (hi - lo))
        else:
            sigma = float("inf")
    ring_k = torch.arange(n_rings, dtype=torch.float64, device=band.k.device)
    ring_k = ring_k / (band.n * band.pixel_size_angstrom)
    filled = counts > 0
    return max(t, 0.0), sigma, ring_k[filled], amp[i][filled]


def _dose_envelope(k: torch.Tensor, dose_e_per_a2: float, voltage_kv: float) -> torch.Tensor:
    """Amplitude envelope of a uniform exposure summed without dose weighting."""
    ne = critical_exposure_e_per_a2(k, voltage_kv=voltage_kv)
    x = dose_e_per_a2 / (2.0 * ne)
    return torch.where(x > 1e-9, (1.0 - torch.exp(-x)) / x.clamp(min=1e-9), torch.ones_like(x))


def _ice_ring_fit(
    full: Band,
    params: torch.Tensor,
    optics: Optics,
    *,
    noise_floor: float,
    n_independent: float,
    ring_k: torch.Tensor,
    ring_amp: torch.Tensor,
    fit_k_max: float,
    dose_e_per_a2: float,
) -> tuple[float, float] | str:
    """``(t_nm, sigma_nm)`` from the ice-ring power, or the reason it cannot be measured."""
    k_r = ICE_RING_FREQUENCY_PER_ANGSTROM
    apix = full.pixel_size_angstrom
    if k_r + _FLANK[1] > 0.5 / apix * 0.98:
        limit = 1 / (k_r + _FLANK[1])
        return f"ice-ring thickness not measured: the band to {limit:.2f} A is beyond Nyquist"
    if optics.voltage_kv < 190:
        return "ice-ring thickness not measured: the damage model is calibrated for 200-300 kV only"
    n_rings = full.n_rings
    counts = ring_sums(torch.ones_like(full.values), full.ring, n_rings)
    k_rings = torch.arange(n_rings, dtype=torch.float64, device=full.k.device) / (full.n * apix)
    mean_p = ring_sums(full.values, full.ring, n_rings) / counts.clamp(min=1)
    data = mean_p - noise_floor
    # envelope beyond the dose damage: Gaussian in k, fitted to the ring amplitudes
    w1 = water_phase_psd(ring_k, thickness_angstrom=1.0, voltage_kv=optics.voltage_kv)
    dose_env = _dose_envelope(ring_k, dose_e_per_a2, optics.voltage_kv)
    use = (ring_k >= 0.1) & (ring_k <= fit_k_max) & (ring_amp > 0)
    if int(use.sum()) < 5:
        return (
            "ice-ring thickness not measured: too few ring amplitudes to extrapolate the envelope"
        )
    scale = 4.0 * noise_floor**2 / apix**2
    z = torch.log(ring_amp[use] / (scale * dose_env[use] ** 2 * w1[use]))
    design = torch.stack([torch.ones_like(ring_k[use]), -(ring_k[use] ** 2)], -1)
    coef = torch.linalg.lstsq(design, z[:, None]).solution.flatten()
    beta = max(float(coef[1]), 0.0)
    # predicted signal of 1 A of ice (per unit P_el^2), CTF^2 averaged to 1/2 at these k
    k_all = k_rings
    predicted = (
        0.5
        * scale
        * _dose_envelope(k_all, dose_e_per_a2, optics.voltage_kv) ** 2
        * torch.exp(-beta * k_all**2)
        * water_phase_psd(k_all, thickness_angstrom=1.0, voltage_kv=optics.voltage_kv)
    )
    offset = (k_all - k_r).abs()
    core = (offset <= _ICE_RING_HALF_WIDTH) & (counts > 0)
    flank = (offset >= _FLANK[0]) & (offset <= _FLANK[1]) & (counts > 0)

    def excess(profile: torch.Tensor) -> torch.Tensor:
        x = torch.stack([torch.ones_like(k_all[flank]), k_all[flank] - k_r], -1)
        line = torch.linalg.lstsq(x, profile[flank][:, None]).solution.flatten()
        return profile[core] - (line[0] + line[1] * (k_all[core] - k_r))

    e_data, e_model = excess(data), excess(predicted)
    var = mean_p[core] ** 2 / (n_independent * counts[core])
    x_hat = float((e_data * e_model / var).sum() / (e_model * e_model / var).sum())
    # the flank line adds noise comparable to the core's own: a factor sqrt(2)
    sigma_x_stat = math.sqrt(2.0 / float((e_model * e_model / var).sum()))
    sigma_x = math.sqrt(sigma_x_stat**2 + (_ICE_RING_SYSTEMATIC * max(x_hat, 0.0)) ** 2)
    lam_in = inelastic_mean_free_path_nm(optics.voltage_kv) * ANGSTROM_PER_NM
    peak_t = lam_in / 2.0
    peak = peak_t * math.exp(-1.0)
    if x_hat <= 0:
        return 0.0, max(sigma_x / ANGSTROM_PER_NM, _ICE_RING_MIN_SIGMA_NM)
    x_c = min(x_hat, peak)
    lo, hi = 0.0, peak_t
    for _ in range(60):  # bisection on the rising branch of t exp(-2t/L)
        mid = 0.5 * (lo + hi)
        if mid * math.exp(-2.0 * mid / lam_in) < x_c:
            lo = mid
        else:
            hi = mid
    t = 0.5 * (lo + hi)
    slope = math.exp(-2.0 * t / lam_in) * (1.0 - 2.0 * t / lam_in)
    sigma_t = sigma_x / max(slope, 0.05)
    return t / ANGSTROM_PER_NM, max(sigma_t / ANGSTROM_PER_NM, _ICE_RING_MIN_SIGMA_NM)


def estimate_ice_thickness(
    band: Band,
    params: torch.Tensor,
    optics: Optics,
    *,
    noise_floor: float,
    attenuation: torch.Tensor | float,
    n_independent: float,
    full: Band,
    fit_k_max: float,
    dose_e_per_a2: float,
) -> IceFit:
    """Both estimates and their inverse-variance combination (see the module docstring)."""
    warnings: list[str] = []
    keep = band.k <= fit_k_max
    sub = band.subset(keep)
    att = attenuation[keep] if isinstance(attenuation, torch.Tensor) else attenuation
    t_a, s_a, ring_k, ring_amp = _rings_fit(
        sub, params, optics, noise_floor=noise_floor, attenuation=att, n_independent=n_independent
    )
    ring = _ice_ring_fit(
        full,
        params,
        optics,
        noise_floor=noise_floor,
        n_independent=n_independent,
        ring_k=ring_k,
        ring_amp=ring_amp,
        fit_k_max=fit_k_max,
        dose_e_per_a2=dose_e_per_a2,
    )
    upper_limit = -s_a if s_a < 0 else None
    estimates = [(t_a, s_a)] if upper_limit is None and math.isfinite(s_a) else []
    t_b: float | None = None
    s_b: float | None = None
    if isinstance(ring, str):
        warnings.append(ring)
    else:
        t_b, s_b = ring
        estimates.append(ring)
    if upper_limit is not None:
        s_a = upper_limit
    if not estimates:
        where = "below its lower limit" if upper_limit is not None else "at the top of its range"
        warnings.append(
            f"ice thickness not determined: the Thon-ring fit ({t_a:.0f} nm) is {where} "
            "or flat, and the ice ring gives none"
        )
        return IceFit(None, t_a, t_b, None, s_a, s_b, tuple(warnings))
    weights = [1.0 / max(s, 1e-6) ** 2 for _, s in estimates]
    t = sum(w * v for w, (v, _) in zip(weights, estimates, strict=False)) / sum(weights)
    sigma = 1.0 / math.sqrt(sum(weights))
    if upper_limit is not None and t_b is not None and s_b is not None:
        if t_b - upper_limit > 3.0 * s_b:
            warnings.append(
                f"ice estimates disagree: rings below {upper_limit:.0f} nm vs ice ring "
                f"{t_b:.0f} +- {s_b:.0f} nm"
            )
            sigma = max(sigma, (t_b - upper_limit) / 2.0)
    elif t_b is not None and s_b is not None and math.isfinite(s_a):
        gap = abs(t_a - t_b) / math.hypot(s_a, s_b)
        if gap > 3.0:
            warnings.append(
                f"ice estimates disagree: rings {t_a:.0f} +- {s_a:.0f} nm vs ice ring "
                f"{t_b:.0f} +- {s_b:.0f} nm ({gap:.1f} sigma)"
            )
            sigma = max(sigma, abs(t_a - t_b) / 2.0)
    if sigma > MAX_ICE_SIGMA_NM:
        rings = f"below {upper_limit:.0f}" if upper_limit is not None else f"{t_a:.0f}"
        warnings.append(
            f"ice thickness not determined: {t:.0f} +- {sigma:.0f} nm (rings {rings} nm, "
            f"ice ring {'-' if t_b is None else f'{t_b:.0f}'} nm)"
        )
        return IceFit(None, t_a, t_b, None, s_a, s_b, tuple(warnings))
    return IceFit(t, t_a, t_b, sigma, s_a, s_b, tuple(warnings))
