"""Private: background, 1-D defocus search, astigmatism grid and Gauss-Newton refinement."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from causalscope.models.ctf_estimation._model import (
    Band,
    Optics,
    moving_average,
    phase,
    ring_model,
    ring_sums,
)


def interpolate_profile(profile: torch.Tensor, radius_px: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of a per-ring profile at fractional radii."""
    x = radius_px.clamp(0, profile.shape[0] - 1 - 1e-9)
    i0 = torch.floor(x).long()
    f = x - i0
    return profile[i0] * (1 - f) + profile[(i0 + 1).clamp(max=profile.shape[0] - 1)] * f


def ring_means(band: Band, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of ``values`` per ring and the pixel count per ring."""
    n_rings = band.n_rings
    counts = ring_sums(torch.ones_like(values), band.ring, n_rings)
    sums = ring_sums(values, band.ring, n_rings)
    return sums / counts.clamp(min=1), counts


def fill_empty(profile: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Replace empty rings by their nearest filled neighbour outward (then inward)."""
    out = profile.clone()
    filled = torch.nonzero(counts > 0).flatten()
    if filled.numel() == 0:
        return out
    idx = torch.arange(profile.shape[0], device=profile.device)
    pos = torch.searchsorted(filled, idx).clamp(max=filled.numel() - 1)
    return out[filled[pos]]


def initial_background(band: Band, half_width_px: int) -> torch.Tensor:
    """Smooth radial background per pixel: running mean of the log rotational average.

    The window (CTFFIND's box: sqrt(2) times the low-resolution limit in spectrum pixels) is
    wider than the Thon rings' period over most of the band, so the rings average out.
    """
    mean, counts = ring_means(band, band.values.clamp(min=1e-30).log())
    mean = fill_empty(mean, counts)
    smooth = moving_average(mean, half_width_px).exp()
    return interpolate_profile(smooth, band.radius_px)


def ring_period_px(
    band_n: int, k: torch.Tensor, defocus: float, optics: Optics, apix: float
) -> torch.Tensor:
    """Spectral period (pixels) of ``cos 2 chi`` at frequency k for an isotropic defocus."""
    lam = optics.wavelength_angstrom
    slope = 2.0 * math.pi * lam * k * defocus - 2.0 * math.pi * optics.cs_angstrom * lam**3 * k**3
    lag_px = (2.0 * slope).abs() / (2.0 * math.pi) / apix
    return band_n / lag_px.clamp(min=1e-6)


def model_background(band: Band, model: torch.Tensor, half_width: torch.Tensor) -> torch.Tensor:
    """Background per pixel from a windowed regression of the spectrum on ``[1, model]``.

    In each window of rings (at least one Thon-ring period wide) ``values = b + beta * model``;
    ``b`` is the background, free of the ring modulation whatever the ring phase.
    """
    n_rings = band.n_rings
    ones = torch.ones_like(model)
    stats = [
        ring_sums(x, band.ring, n_rings)
        for x in (ones, model, model * model, band.values, band.values * model)
    ]
    s1, sc, scc, sp, spc = (moving_average(s, half_width) for s in stats)
    det = s1 * scc - sc * sc
    ok = det > 1e-6 * (s1 * scc).clamp(min=1e-30)
    b = torch.where(
        ok, (sp * scc - sc * spc) / det.where(ok, torch.ones_like(det)), sp / s1.clamp(min=1e-30)
    )
    counts = ring_sums(ones, band.ring, n_rings)
    b = fill_empty(b, counts)
    b = torch.where(b > 0, b, sp / s1.clamp(min=1e-30))
    return interpolate_profile(b, band.radius_px)


def amplitude_profile(
    band: Band, y: torch.Tensor, model: torch.Tensor, half_width: int = 2
) -> torch.Tensor:
    """Per-pixel ring amplitude ``s`` with ``y ~ s model``: smoothed regression, clamped >= 0."""
    n_rings = band.n_rings
    syc = moving_average(ring_sums(y * model, band.ring, n_rings), half_width)
    scc = moving_average(ring_sums(model * model, band.ring, n_rings), half_width)
    s = (syc / scc.clamp(min=1e-12)).clamp(min=0.0)
    return s[band.ring]


def defocus_grid(
    k_max: float, optics: Optics, *, defocus_min_angstrom: float, defocus_max_angstrom: float
) -> torch.Tensor:
    """Defocus candidates (A), a quarter ring apart at ``k_max`` (``pi lam dd k_max^2 = 1/4``)."""
    step = 0.25 / (math.pi * optics.wavelength_angstrom * k_max * k_max)
    n_steps = max(2, math.ceil((defocus_max_angstrom - defocus_min_angstrom) / step) + 1)
    return torch.linspace(defocus_min_angstrom, defocus_max_angstrom, n_steps, dtype=torch.float64)


def profile_scores(
    rings: torch.Tensor,
    profile: torch.Tensor,
    optics: Optics,
    *,
    n: int,
    pixel_size_angstrom: float,
    defoci: torch.Tensor,
    phase_shift_rad: float = 0.0,
) -> torch.Tensor:
    """Normalised correlation of a radial profile with ``-cos 2(chi + w)`` for each defocus.

    ``rings`` are the profile's radial bins (spectrum pixels of an ``n`` box); the model is
    averaged over four radial sub-samples per bin so that rings finer than a pixel average out
    instead of aliasing. Returns ``(len(defoci),)`` scores in [-1, 1].
    """
    sub = torch.tensor([-0.375, -0.125, 0.125, 0.375], dtype=torch.float64, device=profile.device)
    k_sub = ((rings.to(torch.float64)[:, None] + sub) / (n * pixel_size_angstrom)).flatten()
    zeros = torch.zeros_like(k_sub)
    scores = []
    for chunk in defoci.to(profile.device).split(512):
        params = torch.stack(
            [
                chunk,
                torch.zeros_like(chunk),
                torch.zeros_like(chunk),
                torch.full_like(chunk, phase_shift_rad),
            ],
            -1,
        )
        c = -torch.cos(2.0 * phase(k_sub, zeros, zeros, params, optics))
        c = c.reshape(len(chunk), -1, 4).mean(-1)
        norm = torch.sqrt((c * c).sum(-1) * (profile * profile).sum(-1)).clamp(min=1e-30)
        scores.append((c * profile).sum(-1) / norm)
    return torch.cat(scores)


def search_defocus_1d(
    band: Band,
    y: torch.Tensor,
    optics: Optics,
    *,
    defocus_min_angstrom: float,
    defocus_max_angstrom: float,
    phase_shifts_rad: torch.Tensor,
    normalise_half_width: int,
) -> tuple[float, float, float]:
    """Best ``(defocus, phase_shift_rad, cc)`` of the rotational average against 1-D models.

    Every candidate is evaluated at once (batched, :func:`profile_scores`) on the rotational
    average divided by its running RMS.
    """
    profile, counts = ring_means(band, y)
    rings = torch.nonzero(counts > 0).flatten()
    prof = profile[rings]
    rms = moving_average(prof * prof, normalise_half_width).clamp(min=1e-30).sqrt()
    prof = prof / rms
    defoci = defocus_grid(
        float(band.k.max()),
        optics,
        defocus_min_angstrom=defocus_min_angstrom,
        defocus_max_angstrom=defocus_max_angstrom,
    ).to(y.device)
    n_steps = defoci.numel()
    best = (float(defoci[0]), 0.0, -2.0)
    for ps in phase_shifts_rad.tolist():
        score = profile_scores(
            rings,
            prof,
            optics,
            n=band.n,
            pixel_size_angstrom=band.pixel_size_angstrom,
            defoci=defoci,
            phase_shift_rad=ps,
        )
        i = int(torch.argmax(score))
        if float(score[i]) > best[2]:
            d = float(defoci[i])
            if 0 < i < n_steps - 1:  # parabolic interpolation between grid points
                s0, s1, s2 = (float(score[j]) for j in (i - 1, i, i + 1))
                denom = s0 - 2 * s1 + s2
                if denom < 0:
                    d += 0.5 * (s0 - s2) / denom * float(defoci[1] - defoci[0])
            best = (d, ps, float(score[i]))
    return best


def grid_correlations(
    band: Band,
    y: torch.Tensor,
    weight: torch.Tensor,
    optics: Optics,
    *,
    defoci_angstrom: list[float],
    phase_shift_rad: float,
    grid: torch.Tensor,
) -> torch.Tensor:
    """``(len(defoci), n, n)`` normalised correlations of ``y`` with ``weight * ring_model`` at
    each mean defocus and every ``(a1, a2)`` of ``grid`` ``(n,)`` x ``grid`` (A), as
    :func:`search_astigmatism` describes."""
    per_a = 2.0 * math.pi * optics.wavelength_angstrom * band.k * band.k
    ones = torch.ones(grid.numel(), band.k.numel(), dtype=torch.float64, device=y.device)
    turn1 = torch.polar(ones, grid[:, None] * (per_a * band.cos2))
    turn2 = torch.polar(ones, grid[:, None] * (per_a * band.sin2))
    turn1_twice, turn2_twice = turn1 * turn1, turn2 * turn2
    none = torch.zeros_like(band.k)
    weight2 = weight * weight
    scale = (y * y).sum()
    out = []
    for defocus in defoci_angstrom:
        start = torch.tensor([defocus, 0.0, 0.0, phase_shift_rad], dtype=torch.float64)
        twice = 2.0 * phase(band.k, none, none, start, optics)
        rotation = torch.polar(torch.ones_like(twice), twice)
        # the model is -cos 2 chi: its correlation with the data and its squared norm
        product = -((turn1 * (weight * y * rotation)) @ turn2.T).real
        quartic = (turn1_twice * (weight2 * rotation * rotation)) @ turn2_twice.T
        norm2 = 0.5 * weight2.sum() + 0.5 * quartic.real
        out.append(product / torch.sqrt(norm2 * scale).clamp(min=1e-30))
    return torch.stack(out)


def search_astigmatism(
    band: Band,
    y: torch.Tensor,
    weight: torch.Tensor,
    optics: Optics,
    *,
    defocus_angstrom: float,
    phase_shift_rad: float,
    max_half_astigmatism_angstrom: float,
    max_pixels: int = 6000,
) -> torch.Tensor:
    """Grid search of ``(d offset, a1, a2)`` maximising the weighted CC; returns params ``(4,)``.

    The model's phase ``2 chi`` is a sum of a term in ``d`` and one each linear in ``a1`` and
    ``a2``, so ``cos 2 chi`` is the real part of a product of three complex exponentials. At
    each ``d`` the correlations of the whole ``(a1, a2)`` grid are then one complex matrix
    product over the pixels (the weighted data times ``e^{2i chi}``), and the models' norms
    another (``cos^2 = (1 + cos 4 chi) / 2``): exact, without a cosine per grid point and pixel.
    """
    stride = max(1, band.k.numel() // max_pixels)
    sub = band.subset(torch.arange(0, band.k.numel(), stride, device=y.device))
    ys, ws = y[::stride], weight[::stride]
    lam = optics.wavelength_angstrom
    k_max = float(sub.k.max())
    step = min(0.6 / (math.pi * lam * k_max * k_max), max(max_half_astigmatism_angstrom / 4, 1.0))
    n_a = math.ceil(max_half_astigmatism_angstrom / step)
    grid = torch.arange(-n_a, n_a + 1, dtype=torch.float64, device=y.device) * step
    a1, a2 = torch.meshgrid(grid, grid, indexing="ij")
    keep = a1 * a1 + a2 * a2 <= (max_half_astigmatism_angstrom + 1e-9) ** 2
    defoci = [defocus_angstrom + offset * step for offset in (-0.5, 0.0, 0.5)]
    cc = grid_correlations(
        sub, ys, ws, optics, defoci_angstrom=defoci, phase_shift_rad=phase_shift_rad, grid=grid
    )
    best = int(torch.argmax(cc[:, keep]))  # the first of equals, offsets first
    n_kept = int(keep.sum())
    return torch.tensor(
        [
            defoci[best // n_kept],
            float(a1[keep][best % n_kept]),
            float(a2[keep][best % n_kept]),
            phase_shift_rad,
        ],
        dtype=torch.float64,
        device=y.device,
    )


@dataclass(frozen=True)
class Refinement:
    """Result of the Gauss-Newton refinement."""

    params: torch.Tensor  # (4,) [d, a1, a2, phi_rad]
    covariance: torch.Tensor  # (p, p) over the free parameters
    free: tuple[int, ...]
    cc: float
    n_pixels: int
    reduced_chi2: float


def refine(
    band: Band,
    y: torch.Tensor,
    optics: Optics,
    start: torch.Tensor,
    *,
    fit_phase: bool,
    attenuation: torch.Tensor | float = 1.0,
    iterations: int = 30,
) -> Refinement:
    """Levenberg-Marquardt on ``sum (y - s(k) model(params))^2`` with the ring amplitude ``s(k)``
    re-estimated each step (variable projection); covariance from ``sigma^2 (J^T J)^-1`` with
    ``sigma^2`` the residual variance, i.e. every half-plane pixel counted as one sample.
    """
    free = (0, 1, 2, 3) if fit_phase else (0, 1, 2)
    params = start.clone()
    lam_k2 = math.pi * optics.wavelength_angstrom * band.k * band.k
    damping = 1e-3

    def evaluate(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        model = ring_model(band, p, optics, attenuation=attenuation)
        s = amplitude_profile(band, y, model)
        return model, s, ((y - s * model) ** 2).sum()

    model, s, rss = evaluate(params)
    jac = torch.empty(0)
    for _ in range(iterations):
        two_phi = 2.0 * phase(band.k, band.cos2, band.sin2, params, optics)
        dmodel = 2.0 * attenuation * torch.sin(two_phi)
        cols = [lam_k2, lam_k2 * band.cos2, lam_k2 * band.sin2, torch.ones_like(lam_k2)]
        jac = torch.stack([s * dmodel * cols[i] for i in free], -1)
        jtj = jac.T @ jac
        grad = jac.T @ (y - s * model)
        improved = False
        for _ in range(8):
            lhs = jtj + damping * torch.diag(torch.diag(jtj))
            step = torch.linalg.solve(lhs, grad)
            trial = params.clone()
            trial[list(free)] += step
            t_model, t_s, t_rss = evaluate(trial)
            if t_rss < rss:
                converged = float(rss - t_rss) < 1e-9 * float(rss)
                params, model, s, rss = trial, t_model, t_s, t_rss
                damping = max(damping / 3, 1e-7)
                improved = True
                break
            damping *= 10
        if not improved or converged:
            break
    two_phi = 2.0 * phase(band.k, band.cos2, band.sin2, params, optics)
    dmodel = 2.0 * attenuation * torch.sin(two_phi)
    cols = [lam_k2, lam_k2 * band.cos2, lam_k2 * band.sin2, torch.ones_like(lam_k2)]
    jac = torch.stack([s * dmodel * cols[i] for i in free], -1)
    n = y.numel()
    n_amp = max(1, band.n_rings // 5)
    sigma2 = float(rss) / max(1, n - len(free) - n_amp)
    covariance = sigma2 * torch.linalg.pinv(jac.T @ jac)
    fitted = s * model
    cc = float(
        (fitted * y).sum() / torch.sqrt((fitted * fitted).sum() * (y * y).sum()).clamp(min=1e-30)
    )
    noise_var = float((y * y).mean())
    return Refinement(params, covariance, free, cc, n, sigma2 / max(noise_var, 1e-30))
