"""Physical statistics of one micrograph for triage, free of its gain, offset and bit depth.

Every statistic is a ratio within the image, and every scale is in Angstrom, so that 8-bit
PNGs of unknown contrast stretch and counted MRCs of any pixel size compare:

- ``structure_excess``: power above the white floor. Electrons that cross no matter are
  counted with Poisson noise only, whose power spectrum is flat; ice and particles add
  CTF-transferred power at 1/200-1/20 A^-1. It is the mean periodogram there over the mean at
  0.8-0.95 Nyquist, minus one (0 for an empty hole).
- ``noise_to_mean``: that high-frequency floor over the mean pixel value: 1 for counted
  electrons (Poisson), otherwise the file's scaling (reported, never used to decide).
- ``blob_kurtosis``: excess kurtosis of the image band-passed to 1/400-1/40 A^-1 (objects of
  ~40-400 A). Ice alone is a stationary Gaussian field (0); particles are localised bodies and
  give heavy tails.
- ``local_mean_range``: the 3rd-97th percentile range of the local mean (Gaussian of 100 A),
  after removing a plane (ice gradients), relative to its median: the change of transmitted
  intensity across the field. Dense bodies scatter outside the objective aperture (ice balls,
  aggregates, carbon film: darker), cracks hold no ice (brighter): several %; particles and
  ice alone change it by ~1-2 %. ``anomaly_fraction`` is the share changed by over 2.5 %.
- ``anisotropy``: the smallest over the largest signal power (periodogram above the floor) of
  8 angular sectors at 0.15-0.6 Nyquist: 1 when isotropic; a straight blur during the exposure
  removes the signal along its direction while the counting noise stays white.
- ``ice_spot_ratio`` and ``ice_ring_ratio``: at 3.35-4.05 A (hexagonal ice 3.90, 3.67, 3.44 A;
  cubic 3.67 A), the brightest periodogram value over the median, divided by what the maximum
  of that many exponential (noise) values reaches (``ln M / ln 2`` times the median): ~1 without
  a lattice, >> 1 for Bragg spots; and the annulus' mean over its neighbours' (a powder ring).
  None when Nyquist is coarser than 3.35 A.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.fft
from scipy import ndimage

__all__ = ["TriageFeatures", "ice_statistics", "triage_features", "windowed_ice"]

PARTICLE_BAND_ANGSTROM = (200.0, 30.0)
STRUCTURE_BAND_ANGSTROM = (200.0, 20.0)
LOCAL_MEAN_ANGSTROM = 100.0
ANOMALY_RELATIVE = 0.025
ICE_BAND_ANGSTROM = (4.05, 3.35)
#: threads for the transforms (at most 2: the exposure worker shares its cores)
_WORKERS = min(2, os.cpu_count() or 1)


@dataclass(frozen=True)
class TriageFeatures:
    """The statistics of :mod:`models.triage.features` for one micrograph."""

    pixel_size_angstrom: float
    mean: float
    structure_excess: float
    noise_to_mean: float
    blob_kurtosis: float
    anomaly_fraction: float
    anomaly_sign: float
    local_mean_range: float
    anisotropy: float
    ice_spot_ratio: float | None
    ice_ring_ratio: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able values."""
        return asdict(self)


def triage_features(image: np.ndarray, *, pixel_size_angstrom: float) -> TriageFeatures:
    """Triage statistics of an ``(h, w)`` micrograph (any gain, offset and bit depth).

    Raises ValueError for an image that is not 2D, smaller than 64 px, constant or
    non-finite, or a non-positive pixel size.
    """
    image = np.asarray(image)
    if image.ndim != 2 or min(image.shape) < 64:
        raise ValueError(f"expected an (h, w) image of at least 64 px, got shape {image.shape}")
    if not pixel_size_angstrom > 0:
        raise ValueError(f"pixel_size_angstrom must be positive, got {pixel_size_angstrom}")
    n = min(image.shape)
    image, mean = _square(image)
    if not np.isfinite(image).all():
        raise ValueError("image has non-finite pixels")
    if float(image.min()) == float(image.max()):
        raise ValueError(f"image is constant ({mean:g} everywhere)")
    apix = pixel_size_angstrom
    bands = _bands(n, float(apix))
    centred = image - np.float32(mean)
    psd = _periodogram(centred)
    floor = _mean_at(psd, bands.floor)
    structure = _mean_at(psd, bands.structure) / floor - 1.0
    spot, ring = _ice_statistics(psd, bands)
    return TriageFeatures(
        pixel_size_angstrom=apix,
        mean=mean,
        structure_excess=structure,
        noise_to_mean=floor / mean if mean > 0 else float("nan"),
        blob_kurtosis=_blob_kurtosis(centred, bands),
        anomaly_fraction=(anomaly := _anomaly(image, apix))[0],
        anomaly_sign=anomaly[1],
        local_mean_range=anomaly[2],
        anisotropy=_anisotropy(psd, bands, floor),
        ice_spot_ratio=spot,
        ice_ring_ratio=ring,
    )


def ice_statistics(
    image: np.ndarray, *, pixel_size_angstrom: float
) -> tuple[float | None, float | None]:
    """``(ice_spot_ratio, ice_ring_ratio)`` of an image alone (its square part; None, None
    where Nyquist is coarser than 3.35 A)."""
    n = min(np.shape(image))
    if n < 64 or not pixel_size_angstrom > 0:
        raise ValueError(
            f"need an image of at least 64 px and a pixel size > 0: {n}, {pixel_size_angstrom}"
        )
    square, mean = _square(image)
    psd = _periodogram(square - np.float32(mean))
    return _ice_statistics(psd, _bands(n, float(pixel_size_angstrom)))


def windowed_ice(
    image: np.ndarray, *, pixel_size_angstrom: float, side_px: int, per_side: int
) -> tuple[float | None, float | None]:
    """:func:`ice_statistics` of the window with the brightest spot, of up to ``per_side`` x
    ``per_side`` windows of ``side_px`` spread evenly over ``image`` at full sampling: for a
    micrograph binned for the other statistics, whose binning puts the ice beyond Nyquist
    (crystalline domains of 50-150 nm need not cover any one window)."""
    if 0.5 / pixel_size_angstrom < 1 / ICE_BAND_ANGSTROM[1]:  # the planes beyond Nyquist
        return None, None
    h, w = np.shape(image)
    side = min(side_px, h, w)
    rows = np.linspace(0, h - side, min(per_side, h // side)).astype(int)
    cols = np.linspace(0, w - side, min(per_side, w // side)).astype(int)
    found = [
        ice_statistics(image[r : r + side, c : c + side], pixel_size_angstrom=pixel_size_angstrom)
        for r in rows
        for c in cols
    ]
    return max(found, key=lambda pair: pair[0] or 0.0)


def _square(image: np.ndarray) -> tuple[np.ndarray, float]:
    """The image's top-left square part in single precision (a micrograph holds ~7
    significant digits at most; the statistics' sums accumulate in double) and its mean."""
    n = min(np.shape(image))
    square = np.ascontiguousarray(np.asarray(image)[:n, :n], dtype=np.float32)
    return square, float(square.mean(dtype=np.float64))


@dataclass(frozen=True)
class _Bands:
    """The frequency bands of an ``n x n`` image's half spectrum (``rfft2`` layout), as flat
    indices; computed once per size and pixel size (a session's micrographs share both)."""

    floor: np.ndarray  # 0.8-0.95 Nyquist: the white floor
    structure: np.ndarray  # STRUCTURE_BAND_ANGSTROM (clipped to half Nyquist)
    sector: np.ndarray  # 0.15-0.6 Nyquist: indices, and the sector (0-7) of each
    sector_of: np.ndarray
    sector_count: np.ndarray
    particle_gain: np.ndarray  # PARTICLE_BAND_ANGSTROM's Gaussian band-pass
    ice: np.ndarray | None  # ICE_BAND_ANGSTROM and the annuli either side (None: past Nyquist)
    ice_neighbours: np.ndarray | None


@functools.lru_cache(maxsize=8)
def _bands(n: int, apix: float) -> _Bands:
    ky = np.fft.fftfreq(n)[:, None]
    kx = np.fft.rfftfreq(n)[None, :]
    k_c = np.sqrt(kx**2 + ky**2).ravel()  # cycles/px, 0..0.5*sqrt(2)
    k_a = k_c / apix  # 1/A
    nyq = 0.5
    lo, hi = STRUCTURE_BAND_ANGSTROM
    angle = np.mod(np.arctan2(ky, kx), math.pi) * np.ones((1, kx.shape[1]))
    in_sectors = (k_c >= 0.15 * nyq) & (k_c <= 0.6 * nyq)
    sector_of = np.minimum((angle.ravel() / (math.pi / 8)).astype(np.int64), 7)[in_sectors]
    k2 = (k_a**2).reshape(n, -1)
    low, high = PARTICLE_BAND_ANGSTROM
    k_hi = min(1 / high, 0.4 / apix)
    k_lo = 1 / low
    gain = np.exp(-k2 / (2 * k_hi**2)) * (1 - np.exp(-k2 / (2 * k_lo**2)))
    ice = neighbours = None
    ice_lo, ice_hi = ICE_BAND_ANGSTROM
    if 0.5 / apix >= 1 / ice_hi:
        ice = np.flatnonzero((k_a >= 1 / ice_lo) & (k_a <= 1 / ice_hi))
        width = 1 / ice_hi - 1 / ice_lo
        neighbours = np.flatnonzero(
            ((k_a >= 1 / ice_lo - width) & (k_a < 1 / ice_lo))
            | ((k_a > 1 / ice_hi) & (k_a <= 1 / ice_hi + width) & (k_a <= 0.5 / apix))
        )
    return _Bands(
        floor=np.flatnonzero((k_c >= 0.8 * nyq) & (k_c <= 0.95 * nyq)),
        structure=np.flatnonzero((k_a >= 1 / lo) & (k_a <= min(1 / hi, 0.5 * nyq / apix))),
        sector=np.flatnonzero(in_sectors),
        sector_of=sector_of,
        sector_count=np.bincount(sector_of, minlength=8),
        particle_gain=gain.astype(np.float32),
        ice=ice,
        ice_neighbours=neighbours,
    )


def _periodogram(centred: np.ndarray) -> np.ndarray:
    """The flat half periodogram of the mean-free ``centred`` image, edge-tapered; in
    variance per pixel."""
    window, norm = _window(centred.shape[0])
    spectrum = scipy.fft.rfft2(centred * window, workers=_WORKERS)
    power = spectrum.real**2 + spectrum.imag**2
    return power.ravel() / norm


@functools.lru_cache(maxsize=4)
def _window(n: int) -> tuple[np.ndarray, float]:
    """The periodogram's 2D Tukey window (1/16 of each edge tapered) and its sum of squares."""
    taper = _tukey(n, 1 / 16)
    window = taper[:, None] * taper[None, :]
    return window.astype(np.float32), float((window**2).sum())


def _tukey(n: int, fraction: float) -> np.ndarray:
    edge = max(1, int(n * fraction))
    w = np.ones(n)
    ramp = 0.5 * (1 - np.cos(math.pi * (np.arange(edge) + 0.5) / edge))
    w[:edge] = ramp
    w[-edge:] = ramp[::-1]
    return w


def _mean_at(values: np.ndarray, index: np.ndarray) -> float:
    if index.size == 0:
        return float("nan")
    return float(values[index].mean(dtype=np.float64))


def _interior(image: np.ndarray) -> np.ndarray:
    m = max(1, image.shape[0] // 16)
    return image[m:-m, m:-m]


def _blob_kurtosis(centred: np.ndarray, bands: _Bands) -> float:
    """Excess kurtosis of the mean-free image band-passed to PARTICLE_BAND_ANGSTROM (a
    Gaussian band-pass, clipped to 0.4 of Nyquist), in the interior."""
    spectrum = scipy.fft.rfft2(centred, workers=_WORKERS)
    spectrum *= bands.particle_gain
    band = _interior(scipy.fft.irfft2(spectrum, s=centred.shape, workers=_WORKERS))
    centred_band = band - np.float32(band.mean(dtype=np.float64))
    squared = centred_band * centred_band
    var = float(squared.mean(dtype=np.float64))
    fourth = float(np.vdot(squared.ravel(), squared.ravel()).astype(np.float64)) / squared.size
    return fourth / var**2 - 3.0 if var > 0 else 0.0


def _anomaly(image: np.ndarray, apix: float) -> tuple[float, float, float]:
    """``(fraction, sign, range)`` of the local mean (Gaussian of 100 A) after removing a
    least-squares plane (a gradient of ice thickness), relative to its median: the share of
    the field changed by more than :data:`ANOMALY_RELATIVE`, whether that share is mostly dark
    (-1) or bright (+1), and the 3rd-97th percentile range (a pixel value's offset, which no
    counting detector has, biases both)."""
    sigma_px = max(1.5, LOCAL_MEAN_ANGSTROM / apix)
    # on block means of at most a quarter of the Gaussian's width: the smooth field is the
    # same (the blocks widen it by under 0.3 %) on a grid up to 16x smaller, and the filter's
    # cost (801 taps per pixel at 1 A/px: 0.5 s of a 1024 px micrograph's 0.8 s) falls with it
    step = max(1, int(sigma_px // 4))
    if step > 1:
        h, w = (image.shape[0] // step) * step, (image.shape[1] // step) * step
        rows = image[:h, :w].reshape(h // step, step, w).sum(axis=1, dtype=np.float64)
        image = rows.reshape(h // step, w // step, step).sum(axis=2) / (step * step)
    image = np.asarray(image, dtype=np.float64)
    smooth = _interior(ndimage.gaussian_filter(image, sigma_px / step, mode="reflect"))
    level = float(np.median(smooth))
    if level == 0.0:
        return 0.0, 0.0, 0.0
    y, x = np.mgrid[0 : smooth.shape[0], 0 : smooth.shape[1]]
    design = _plane(x.ravel() / smooth.shape[1], y.ravel() / smooth.shape[0])
    coef = np.linalg.solve(design.T @ design, design.T @ smooth.ravel())  # the normal equations
    relative = (smooth.ravel() - design @ coef) / abs(level)
    relative -= np.median(relative)
    outside = np.abs(relative) > ANOMALY_RELATIVE
    fraction = float(outside.mean())
    sign = float(np.sign(relative[outside].sum())) if fraction > 0 else 0.0
    low, high = np.percentile(relative, [3.0, 97.0])
    return fraction, sign, float(high - low)


def _plane(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(x), x, y], axis=1)


def _anisotropy(psd: np.ndarray, bands: _Bands, floor: float) -> float:
    totals = np.bincount(bands.sector_of, weights=psd[bands.sector], minlength=8)
    counts = bands.sector_count
    sectors = [
        float(totals[s] / counts[s]) - floor if counts[s] else float("nan") for s in range(8)
    ]
    # periodogram values are exponential: the sector mean's sd is floor / sqrt(count)
    noise = max(floor / math.sqrt(max(int(c), 1)) for c in counts)
    # 3 sigmas of noise added to both: a spectrum without signal above the floor reads 1
    return float((max(min(sectors), 0.0) + 3 * noise) / (max(max(sectors), 0.0) + 3 * noise))


def _ice_statistics(psd: np.ndarray, bands: _Bands) -> tuple[float | None, float | None]:
    if bands.ice is None or bands.ice_neighbours is None:
        return None, None
    values = psd[bands.ice].astype(np.float64)
    median = float(np.median(values))
    expected_max = math.log(values.size) / math.log(2.0)
    spot = float(values.max() / median / expected_max) if median > 0 else 0.0
    neighbours = psd[bands.ice_neighbours]
    ring = float(values.mean() / neighbours.mean(dtype=np.float64)) if neighbours.size else None
    return spot, ring
