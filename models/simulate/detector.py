"""A counting detector: modulation transfer, pixel sensitivity, defects and Poisson counts.

Each electron is counted once, at a position blurred by the detector's point spread, so the
counts of a frame are Poisson with mean ``MTF * expected intensity * sensitivity``: the
signal is attenuated by the MTF while the counting noise stays white (DQE = MTF^2, the
behaviour of counting cameras below coincidence loss). The gain reference that microscope
software writes beside movies is ``1 / sensitivity`` (multiply raw frames by it); dead pixels
and columns have sensitivity 0, hot pixels add counts whatever the beam does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "DetectorTruth",
    "analytic_counting_mtf",
    "count_electrons",
    "draw_detector",
    "tabulated_mtf",
]

MtfFunction = Callable[[torch.Tensor], torch.Tensor]


def analytic_counting_mtf(frequency_cycles_per_px: torch.Tensor) -> torch.Tensor:
    """A counting camera's MTF: the pixel aperture ``sinc(k)`` times a Gaussian spread.

    The spread (sigma 0.27 px) puts MTF(Nyquist) at 0.53, about what K3 and Falcon 4 reach in
    counting mode at 300 kV.
    """
    k = frequency_cycles_per_px.abs()
    return torch.sinc(k) * torch.exp(-2.0 * (np.pi * 0.27 * k) ** 2)


def tabulated_mtf(frequency_cycles_per_px: np.ndarray, values: np.ndarray) -> MtfFunction:
    """An MTF interpolated linearly from a table (e.g. RELION's mtf_*.star), flat past its end."""
    freq = np.asarray(frequency_cycles_per_px, dtype=np.float64)
    vals = np.asarray(values, dtype=np.float64)
    if freq.ndim != 1 or freq.shape != vals.shape or np.any(np.diff(freq) <= 0):
        raise ValueError("MTF table needs increasing frequencies and one value each")

    def mtf(k: torch.Tensor) -> torch.Tensor:
        flat = np.interp(k.abs().detach().cpu().numpy().ravel(), freq, vals)
        return torch.as_tensor(flat.reshape(tuple(k.shape)), dtype=k.dtype, device=k.device)

    return mtf


@dataclass(frozen=True)
class DetectorTruth:
    """The detector's true state: what a gain reference and a defect list describe."""

    sensitivity: np.ndarray
    dead_columns: tuple[int, ...]
    dead_pixels: tuple[tuple[int, int], ...]
    hot_pixels: tuple[tuple[int, int], ...]
    hot_pixel_rate: float

    @property
    def gain_reference(self) -> np.ndarray:
        """Multiplicative gain reference (``1 / sensitivity``; 0 where a pixel is dead)."""
        with np.errstate(divide="ignore"):
            gain = np.where(self.sensitivity > 0, 1.0 / self.sensitivity, 0.0)
        return gain.astype(np.float32)

    @property
    def defect_mask(self) -> np.ndarray:
        """True where a pixel is dead or hot."""
        mask = self.sensitivity <= 0
        for x, y in self.hot_pixels:
            mask[y, x] = True
        return mask


def draw_detector(
    rng: np.random.Generator,
    shape: tuple[int, int],
    *,
    sensitivity_spread: float = 0.05,
    n_dead_columns: int = 1,
    n_dead_pixels: int = 20,
    n_hot_pixels: int = 10,
    hot_pixel_rate: float = 3.0,
) -> DetectorTruth:
    """Draw a sensor: per-pixel sensitivity around 1 with a smooth readout-section pattern,
    dead columns and pixels (sensitivity 0) and hot pixels (``hot_pixel_rate`` extra counts
    per frame)."""
    h, w = shape
    pixel = rng.normal(1.0, sensitivity_spread, size=shape)
    sections = 1.0 + 0.5 * sensitivity_spread * np.sin(
        2 * np.pi * np.arange(w) / max(w / 4, 1) + rng.uniform(0, 2 * np.pi)
    )
    sensitivity = np.clip(pixel * sections[None, :], 0.5, 1.5)
    dead_columns = tuple(int(c) for c in rng.choice(w, size=n_dead_columns, replace=False))
    sensitivity[:, list(dead_columns)] = 0.0
    dead = tuple(
        (int(x), int(y))
        for x, y in zip(
            rng.integers(0, w, n_dead_pixels), rng.integers(0, h, n_dead_pixels), strict=True
        )
    )
    for x, y in dead:
        sensitivity[y, x] = 0.0
    # dict.fromkeys: a pixel drawn twice is one hot pixel, listed once
    hot = tuple(
        dict.fromkeys(
            (int(x), int(y))
            for x, y in zip(
                rng.integers(0, w, n_hot_pixels), rng.integers(0, h, n_hot_pixels), strict=True
            )
            if sensitivity[y, x] > 0
        )
    )
    return DetectorTruth(sensitivity.astype(np.float32), dead_columns, dead, hot, hot_pixel_rate)


def count_electrons(
    expected_counts: torch.Tensor,
    *,
    detector: DetectorTruth | None,
    generator: torch.Generator,
) -> torch.Tensor:
    """Poisson counts of one frame (``(h, w)`` expected counts already MTF-filtered)."""
    rate = expected_counts.clamp(min=0.0)
    if detector is not None:
        rate = rate * torch.as_tensor(detector.sensitivity, device=rate.device, dtype=rate.dtype)
        if detector.hot_pixels:
            xs, ys = zip(*detector.hot_pixels, strict=True)
            rate[list(ys), list(xs)] += detector.hot_pixel_rate
    return torch.poisson(rate, generator=generator)
