"""Private: fit resolution (equiphase-averaged local correlation), ring aliasing and ambiguity."""

from __future__ import annotations

import math

import torch

from causalscope.models.ctf_estimation._fit import defocus_grid, profile_scores, ring_period_px
from causalscope.models.ctf_estimation._model import (
    Band,
    Optics,
    moving_average,
    phase,
    ring_model,
    ring_sums,
)

#: local correlation below which the rings count as no longer supported
FIT_RESOLUTION_THRESHOLD = 0.5


def equiphase_radius_px(band: Band, params: torch.Tensor, optics: Optics) -> torch.Tensor:
    """Radius (pixels) at which the isotropic CTF (mean defocus) has each pixel's phase.

    Solves ``pi lam d u - pi/2 Cs lam^3 u^2 = chi(k, theta) - phi`` for ``u = k_eq^2`` (the
    root before the phase's turning point); NaN where there is none.
    """
    lam, cs = optics.wavelength_angstrom, optics.cs_angstrom
    d, a1, a2 = float(params[0]), float(params[1]), float(params[2])
    k2 = band.k * band.k
    local = d + a1 * band.cos2 + a2 * band.sin2
    chi = math.pi * lam * local * k2 - 0.5 * math.pi * cs * lam**3 * k2 * k2
    if cs <= 0:
        u = chi / (math.pi * lam * d)
    else:
        a = 0.5 * math.pi * cs * lam**3
        b = math.pi * lam * d
        disc = b * b - 4 * a * chi
        u = torch.where(disc >= 0, (b - disc.clamp(min=0).sqrt()) / (2 * a), torch.nan)
    return torch.sqrt(u.clamp(min=0)) * band.n * band.pixel_size_angstrom


def fit_resolution(
    band: Band,
    y: torch.Tensor,
    params: torch.Tensor,
    optics: Optics,
    *,
    k_start: float,
) -> tuple[float | None, torch.Tensor]:
    """Highest frequency (1/A) to which the equiphase-averaged rings match the model.

    Pixels are averaged along lines of equal CTF phase (undoing astigmatism), then a local
    correlation between the 1-D average and the equally averaged model is taken in windows of
    at least two ring periods (and 9 bins). The fit resolution is where that correlation first
    stays below :data:`FIT_RESOLUTION_THRESHOLD` for three consecutive bins, counting outward
    from ``k_start``. Returns ``(k or None, local_cc per bin)``.
    """
    radius = equiphase_radius_px(band, params, optics)
    ok = torch.isfinite(radius)
    bins = torch.round(radius[ok]).long()
    n_bins = int(bins.max().item()) + 1 if bins.numel() else 0
    if n_bins < 4:
        return None, torch.zeros(0)
    model = ring_model(band.subset(ok), params, optics)
    counts = ring_sums(torch.ones_like(model), bins, n_bins)
    y_eq = ring_sums(y[ok], bins, n_bins) / counts.clamp(min=1)
    c_eq = ring_sums(model, bins, n_bins) / counts.clamp(min=1)
    apix = band.pixel_size_angstrom
    k_bins = torch.arange(n_bins, dtype=torch.float64, device=y.device) / (band.n * apix)
    period = ring_period_px(band.n, k_bins, float(params[0]), optics, apix)
    half = torch.clamp(torch.ceil(period), min=4, max=40).long()
    filled = (counts > 0).to(y.dtype)
    yc = moving_average(y_eq * c_eq * filled, half)
    yy = moving_average(y_eq * y_eq * filled, half)
    cc_ = moving_average(c_eq * c_eq * filled, half)
    ym = moving_average(y_eq * filled, half)
    cm = moving_average(c_eq * filled, half)
    local = (yc - ym * cm) / torch.sqrt(
        (yy - ym * ym).clamp(min=1e-30) * (cc_ - cm * cm).clamp(min=1e-30)
    )
    start = math.ceil(k_start * band.n * apix)
    # equiphase radii of an astigmatic spectrum's corners reach past Nyquist: a fit resolution
    # is never claimed there (bin n/2 is Nyquist)
    limit = min(n_bins, band.n // 2 + 1)
    good = torch.nonzero(
        (local[start:limit] >= FIT_RESOLUTION_THRESHOLD) & (counts[start:limit] > 0)
    ).flatten()
    if good.numel() == 0:
        return None, local
    # the first ring or two may be unsupported (low-frequency structure): start at the first
    # supported bin, then walk outward
    first = start + int(good[0])
    below = 0
    last_good: int | None = None
    for i in range(first, limit):
        if counts[i] == 0:
            continue
        if float(local[i]) >= FIT_RESOLUTION_THRESHOLD:
            below = 0
            last_good = i
        else:
            below += 1
            if below >= 3:
                break
    if last_good is None:
        return None, local
    return float(k_bins[last_good]), local


def alias_frequency(
    params: torch.Tensor,
    optics: Optics,
    *,
    n: int,
    pixel_size_angstrom: float,
    min_period_px: float = 2.0,
) -> float | None:
    """Lowest frequency (1/A) at which the rings along U are finer than ``min_period_px``."""
    d_u = float(params[0]) + float(torch.hypot(params[1], params[2]))
    nyquist = 0.5 / pixel_size_angstrom
    k = torch.linspace(1e-4, nyquist, 4000, dtype=torch.float64)
    period = ring_period_px(n, k, d_u, optics, pixel_size_angstrom)
    bad = torch.nonzero(period < min_period_px).flatten()
    return None if bad.numel() == 0 else float(k[bad[0]])


def ring_periods(defocus_angstrom: float, optics: Optics, k_lo: float, k_hi: float) -> float:
    """Thon-ring periods (zeros of ``sin(chi + w)``) between two frequencies (1/A), isotropic."""
    if k_hi <= k_lo:
        return 0.0
    k = torch.tensor([k_lo, k_hi], dtype=torch.float64)
    params = torch.tensor([[defocus_angstrom, 0.0, 0.0, 0.0]], dtype=torch.float64)
    zeros = torch.zeros_like(k)
    chi = phase(k, zeros, zeros, params, optics)[0]
    return float(chi[1] - chi[0]) / math.pi


def competing_defocus(
    band: Band,
    y: torch.Tensor,
    params: torch.Tensor,
    optics: Optics,
    *,
    k_lo: float,
    k_hi: float,
    defocus_min_angstrom: float,
    defocus_max_angstrom: float,
    separation_angstrom: float,
    normalise_half_width: int,
) -> tuple[float, float, float] | None:
    """The fit's score and the best competing defocus and its score: ``(s_fit, d, s)``.

    The spectrum between ``k_lo`` and ``k_hi`` is averaged along lines of equal CTF phase at the
    fitted astigmatism, divided by its running RMS (each ring counts alike) and correlated
    with 1-D models over the search range (:func:`profile_scores`). ``s_fit`` is the best
    score within ``separation_angstrom`` of the fitted mean defocus; the competitor is the
    highest local maximum further away (None when there is none, or no profile).
    """
    radius = equiphase_radius_px(band, params, optics)
    keep = torch.isfinite(radius) & (band.k >= k_lo) & (band.k <= k_hi)
    if int(keep.sum()) == 0:
        return None
    bins = torch.round(radius[keep]).long()
    n_bins = int(bins.max().item()) + 1
    counts = ring_sums(torch.ones_like(y[keep]), bins, n_bins)
    sums = ring_sums(y[keep], bins, n_bins)
    rings = torch.nonzero(counts > 0).flatten()
    if rings.numel() < 4:
        return None
    prof = sums[rings] / counts[rings]
    prof = prof / moving_average(prof * prof, normalise_half_width).clamp(min=1e-30).sqrt()
    defoci = defocus_grid(
        k_hi,
        optics,
        defocus_min_angstrom=defocus_min_angstrom,
        defocus_max_angstrom=defocus_max_angstrom,
    ).to(y.device)
    scores = profile_scores(
        rings,
        prof,
        optics,
        n=band.n,
        pixel_size_angstrom=band.pixel_size_angstrom,
        defoci=defoci,
        phase_shift_rad=float(params[3]),
    )
    near = (defoci - float(params[0])).abs() <= separation_angstrom
    if not bool(near.any()):
        return None
    s_fit = float(scores[near].max())
    padded = torch.cat([scores.new_full((1,), -2.0), scores, scores.new_full((1,), -2.0)])
    peak = (scores >= padded[:-2]) & (scores >= padded[2:]) & ~near
    if not bool(peak.any()):
        return None
    i = int(torch.argmax(torch.where(peak, scores, scores.new_full((), -2.0))))
    return s_fit, float(defoci[i]), float(scores[i])
