"""Resolution against particle count: the Rosenthal-Henderson fit and its forecast.

Rosenthal & Henderson (2003): a map whose signal falls with an overall B-factor needs
``ln N = B / (2 d^2) + c`` particles for resolution ``d``, so ``1/d^2`` against ``ln N`` is a
line of slope ``2 / B`` (what RELION's ``bfactor_plot`` fits). A 3D reconstruction adds a
geometric factor that line leaves out: the central slices of ``N`` particles cover a Fourier
shell at frequency ``k`` ``N / (2 k)`` times on average, so the half-map SSNR at the FSC
threshold is ``N exp(-B k^2 / 2) / k`` times a constant, and ``ln(N d) = (B / 2) / d^2 + c``.
The same model fitted to the shells of one half-map FSC (:func:`fit_ssnr`) forecasts without
subsets, since SSNR grows in proportion to the particle count. Fitted to subsets, the B-factor
is the envelope's (on simulated data with a flat spectrum and
a known envelope, 60 A^2 from 59.8; the plain line gave 83); both are reported. Forecasts
use the corrected model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "LOG_SD_PER_DOUBLING",
    "RosenthalHenderson",
    "SessionEnd",
    "SsnrForecast",
    "doubling_subsets",
    "fit_rosenthal_henderson",
    "fit_ssnr",
    "session_end",
]


def doubling_subsets(n_particles: int, *, smallest: int = 500) -> list[int]:
    """Subset sizes ``smallest, 2 smallest, 4 smallest, ...`` below ``n_particles``, then
    ``n_particles`` itself."""
    if smallest < 1:
        raise ValueError(f"smallest must be >= 1, got {smallest}")
    sizes = []
    size = smallest
    while size < n_particles:
        sizes.append(size)
        size *= 2
    return [*sizes, n_particles] if n_particles >= 1 else sizes


@dataclass(frozen=True)
class RosenthalHenderson:
    """``ln(N d) = (B / 2) / d^2 + constant`` (d in A), with the B-factor's standard error
    (``nan`` with only two points), and RELION's plain line's B-factor for comparison."""

    bfactor_angstrom2: float
    bfactor_sd_angstrom2: float
    constant: float
    plain_bfactor_angstrom2: float
    particles: tuple[int, ...]
    resolutions_angstrom: tuple[float, ...]

    def particles_for(self, resolution_angstrom: float) -> float:
        """Particles (a float; ``inf`` if never) the model needs for ``resolution_angstrom``."""
        if not self.bfactor_angstrom2 > 0 or not math.isfinite(self.bfactor_angstrom2):
            return math.inf
        exponent = self.bfactor_angstrom2 / (2 * resolution_angstrom**2) + self.constant
        exponent -= math.log(resolution_angstrom)
        return math.exp(exponent) if exponent < 700 else math.inf

    def resolution_at(self, n_particles: float) -> float:
        """Forecast resolution (A) from ``n_particles`` (``inf`` where the model gives none):
        the root in ``d`` of ``ln(N d) = (B / 2) / d^2 + c``, found by bisection in ``1/d^2``
        (the left side minus the right falls monotonically with it)."""
        if not self.bfactor_angstrom2 > 0 or not math.isfinite(self.bfactor_angstrom2):
            return math.inf
        target = math.log(n_particles) - self.constant

        def excess(inverse_d2: float) -> float:  # increasing in 1/d^2
            return self.bfactor_angstrom2 / 2 * inverse_d2 + 0.5 * math.log(inverse_d2) - target

        low, high = 1e-8, 10.0
        if excess(low) > 0 or excess(high) < 0:
            return math.inf
        for _ in range(200):
            middle = math.sqrt(low * high)
            low, high = (middle, high) if excess(middle) < 0 else (low, middle)
        return 1.0 / math.sqrt(math.sqrt(low * high))

    def hours_to(
        self, resolution_angstrom: float, *, particles_now: int, particles_per_hour: float
    ) -> float:
        """Hours until ``resolution_angstrom`` at the current rate (0 if already there)."""
        needed = self.particles_for(resolution_angstrom)
        if needed <= particles_now:
            return 0.0
        if particles_per_hour <= 0 or not math.isfinite(needed):
            return math.inf
        return (needed - particles_now) / particles_per_hour


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares slope, intercept and the slope's standard error (nan for 2 points)."""
    design = np.stack([x, np.ones_like(x)], axis=1)
    (slope, intercept), *_ = np.linalg.lstsq(design, y, rcond=None)
    slope_sd = math.nan
    if len(x) > 2:
        residual = y - design @ np.array([slope, intercept])
        variance = float(residual @ residual) / (len(x) - 2)
        slope_sd = math.sqrt(variance / float(((x - x.mean()) ** 2).sum()))
    return float(slope), float(intercept), slope_sd


def fit_rosenthal_henderson(
    particles: list[int] | np.ndarray, resolutions_angstrom: list[float] | np.ndarray
) -> RosenthalHenderson:
    """Fit through >= 2 subsets with a finite resolution."""
    n = np.asarray(particles, dtype=np.float64)
    d = np.asarray(resolutions_angstrom, dtype=np.float64)
    if n.shape != d.shape or n.ndim != 1:
        raise ValueError(f"particles and resolutions must be (k,) each, got {n.shape}, {d.shape}")
    keep = np.isfinite(d) & (d > 0) & (n > 0)
    if keep.sum() < 2:
        raise ValueError(
            f"need >= 2 subsets with a finite resolution, got {int(keep.sum())} of {n.size}"
        )
    n, d = n[keep], d[keep]
    half_b, constant, half_b_sd = _line(1.0 / d**2, np.log(n * d))
    plain_slope, _, _ = _line(np.log(n), 1.0 / d**2)
    return RosenthalHenderson(
        bfactor_angstrom2=2.0 * half_b,
        bfactor_sd_angstrom2=2.0 * half_b_sd,
        constant=constant,
        plain_bfactor_angstrom2=2.0 / plain_slope if plain_slope > 0 else math.inf,
        particles=tuple(int(v) for v in n),
        resolutions_angstrom=tuple(float(v) for v in d),
    )


@dataclass(frozen=True)
class SsnrForecast:
    """The half-map SSNR of ``particles`` particles, ``SSNR(k) = exp(a - (B/2) k^2) / k``
    (k in 1/A), fitted to one FSC curve (``SSNR = FSC / (1 - FSC)`` on its informative shells).

    SSNR grows in proportion to the particle count, so the resolution from ``N'`` particles is
    where ``SSNR(k) N' / N`` falls to 0.1669 (the half-map FSC of 0.143): no subsets needed.
    """

    log_amplitude: float
    bfactor_angstrom2: float
    particles: int

    @classmethod
    def through(
        cls,
        resolution_angstrom: float,
        *,
        particles: int,
        bfactor_angstrom2: float,
        threshold: float = 0.143,
    ) -> SsnrForecast:
        """The forecast of B-factor ``bfactor_angstrom2`` whose resolution from ``particles``
        is ``resolution_angstrom`` (at ``threshold``): a stored forecast's fit, again, from
        its B and one of its resolutions."""
        if not (resolution_angstrom > 0 and particles > 0):
            raise ValueError(
                f"need resolution_angstrom > 0 and particles > 0, got {resolution_angstrom} "
                f"and {particles}"
            )
        k = 1.0 / resolution_angstrom
        log_amplitude = math.log(threshold / (1 - threshold)) + bfactor_angstrom2 / 2 * k * k
        return cls(log_amplitude + math.log(k), bfactor_angstrom2, int(particles))

    def resolution_at(self, n_particles: float, *, threshold: float = 0.143) -> float:
        """Forecast resolution (A) at the FSC ``threshold`` from ``n_particles``."""
        target = math.log(threshold / (1 - threshold)) - math.log(n_particles / self.particles)
        if not self.bfactor_angstrom2 > 0:
            return math.nan

        def excess(k: float) -> float:  # falls with k
            return self.log_amplitude - self.bfactor_angstrom2 / 2 * k * k - math.log(k) - target

        low, high = 1e-4, 10.0
        if excess(low) < 0 or excess(high) > 0:
            return math.nan
        for _ in range(200):
            middle = 0.5 * (low + high)
            low, high = (middle, high) if excess(middle) > 0 else (low, middle)
        return 1.0 / (0.5 * (low + high))

    def particles_for(self, resolution_angstrom: float, *, threshold: float = 0.143) -> float:
        """Particles (a float) whose half-map FSC reaches ``threshold`` at
        ``resolution_angstrom``: ``N SNR_t / SSNR(1/d)`` with ``SNR_t = t / (1 - t)``."""
        k = 1.0 / resolution_angstrom
        exponent = self.log_amplitude - self.bfactor_angstrom2 / 2 * k * k - math.log(k)
        needed = math.log(threshold / (1 - threshold)) - exponent
        return self.particles * math.exp(needed) if needed < 700 else math.inf


def fit_ssnr(
    fsc: np.ndarray,
    *,
    pixel_size_angstrom: float,
    particles: int,
    low: float = 0.03,
    high: float = 0.6,
) -> SsnrForecast:
    """Fit :class:`SsnrForecast` to a half-map FSC ``(s,)`` (shell ``i`` at ``i / (2 (s-1))``
    cycles per pixel) on the shells whose FSC lies in (``low``, ``high``), from the first shell
    below ``high`` to the first below ``low``.

    The shells near the thresholds a forecast crosses (0.143 now, lower for more particles)
    carry it; the low-frequency shells the model describes less well (FSC above 0.6) are left
    out. Forecasting 8,000 particles from 4,000 (`bench reconstruction`, seeds 0-2) was
    +4.2, +3.9 and +5.3 % off with (0.05, 0.95) and +1.1, +1.9 and +0.1 % with (0.03, 0.6).
    """
    curve = np.asarray(fsc, dtype=np.float64)
    if curve.ndim != 1 or curve.size < 4:
        raise ValueError(f"fsc must be (s >= 4,), got shape {curve.shape}")
    k = np.arange(curve.size) / (2 * (curve.size - 1) * pixel_size_angstrom)
    below = np.flatnonzero(curve[1:] < low)
    end = int(below[0]) + 1 if below.size else curve.size
    shells = np.arange(1, end)
    shells = shells[(curve[shells] > low) & (curve[shells] < high)]
    if shells.size < 2:
        raise ValueError(
            f"need >= 2 shells with FSC in ({low}, {high}) before it falls below {low}, "
            f"got {shells.size}"
        )
    ssnr = curve[shells] / (1 - curve[shells])
    slope, intercept = np.polyfit(k[shells] ** 2, np.log(ssnr * k[shells]), 1)
    return SsnrForecast(float(intercept), float(-2 * slope), int(particles))


#: spread (natural log of the resolution) of a forecast per doubling of the particles: the
#: errors of forecasting from every size (500 to 4,000 particles) every larger one up to
#: 8,000 (`bench reconstruction`'s forecast calibration, seeds 0-19: 200 pairs, 1 to 4
#: doublings ahead) give 0.050; on seeds 20-39, not used for it, the outcomes then fell within
#: one spread of the forecast in 74 % of 200 pairs and within two in 96 % (0.68 and 0.95 if
#: calibrated). With the earlier 0.04 (twice the RMS error of 4,000 -> 8,000 alone), 65 % and
#: 92 %: forecasts from a few hundred particles are off by more than that
LOG_SD_PER_DOUBLING = 0.05


@dataclass(frozen=True)
class SessionEnd:
    """What the session will give by its planned end at the current particle rate: the
    particles then, the resolution the SSNR model expects from them and the probability that
    it reaches the target (``nan`` where the model gives no resolution)."""

    hours_left: float
    particles: float
    resolution_angstrom: float
    p_reach_target: float


def session_end(
    forecast: SsnrForecast,
    *,
    particles_per_hour: float,
    hours_left: float,
    target_angstrom: float,
) -> SessionEnd:
    """The session's end: ``N_end = N + rate * hours_left`` particles, the resolution
    :meth:`SsnrForecast.resolution_at` gives them, and ``P(d_end <= target)`` with ``ln d_end``
    normal about the forecast, its spread :data:`LOG_SD_PER_DOUBLING` per doubling of the
    particles (and at least 1 %: the current map's own resolution is itself measured on
    shells)."""
    if particles_per_hour < 0 or hours_left < 0 or target_angstrom <= 0:
        raise ValueError(
            "need particles_per_hour >= 0, hours_left >= 0 and target_angstrom > 0, got "
            f"{particles_per_hour}, {hours_left} and {target_angstrom}"
        )
    end = forecast.particles + particles_per_hour * hours_left
    resolution = forecast.resolution_at(end)
    if not math.isfinite(resolution) or resolution <= 0:
        return SessionEnd(hours_left, end, math.nan, math.nan)
    spread = max(0.01, LOG_SD_PER_DOUBLING * math.log2(end / forecast.particles))
    z = (math.log(target_angstrom) - math.log(resolution)) / spread
    return SessionEnd(hours_left, end, resolution, 0.5 * (1.0 + math.erf(z / math.sqrt(2.0))))
