"""Private: the projected phase of the junk a picker also picks (ice blobs, carbon edges).

Both are drawn as a phase map (radians) on the square canvas of
:mod:`models.simulate.particle_stack`, centred on the pick; aggregates are made of the specimen's
own atoms there. Phases follow the weak-phase model of :mod:`models.simulate.specimen`: a
material of mean inner potential ``V`` and projected thickness ``t`` shifts the phase by
``sigma V t``.
"""

from __future__ import annotations

import math

import numpy as np

from causalscope.models.simulate.specimen import ICE_MEAN_INNER_POTENTIAL_V
from causalscope.models.units import interaction_constant_rad_per_v_angstrom

__all__ = ["carbon_edge_phase", "ice_blob_phase"]

#: mean inner potential of amorphous carbon, volts (7.8-10.7 V measured; 9 V typical)
CARBON_MEAN_INNER_POTENTIAL_V = 9.0
_CARBON_THICKNESS_ANGSTROM = (50.0, 150.0)
_CARBON_TEXTURE_RMS = 0.15  # relative thickness variation of the film
_CARBON_TEXTURE_ANGSTROM = 8.0  # correlation length of that variation
_ICE_LARGE_RADIUS = (1.6, 3.0)  # blob radius / particle radius
_ICE_SMALL_RADIUS = (0.3, 0.55)
_ICE_DENSITY = (1.0, 1.4)  # projected density relative to vitreous ice (crystalline, ethane)
_ICE_ROUGHNESS = 0.06  # rms relative amplitude of each angular harmonic 2..4 of the outline


def _grid(canvas_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates ``(x, y)`` relative to the canvas centre ``canvas_px // 2``."""
    c = np.arange(canvas_px, dtype=np.float64) - canvas_px // 2
    y, x = np.meshgrid(c, c, indexing="ij")
    return x, y


def ice_blob_phase(
    rng: np.random.Generator,
    canvas_px: int,
    *,
    centre_px: np.ndarray,
    particle_radius_px: float,
    pixel_size_angstrom: float,
    voltage_kv: float,
) -> np.ndarray:
    """``(c, c)`` phase of a dense, roughly round contaminant on the ice.

    Half of the blobs are much larger than the particle (1.6-3 radii), half much smaller
    (0.3-0.55 radii); the outline wobbles with angular harmonics 2-4, and the projected
    thickness is the chord through a body of that outline (a sphere's ``2 sqrt(R^2 - r^2)``).
    """
    large = rng.random() < 0.5
    lo, hi = _ICE_LARGE_RADIUS if large else _ICE_SMALL_RADIUS
    radius_px = rng.uniform(lo, hi) * particle_radius_px
    density = rng.uniform(*_ICE_DENSITY)
    x, y = _grid(canvas_px)
    x = x - centre_px[0]
    y = y - centre_px[1]
    theta = np.arctan2(y, x)
    outline = np.ones_like(theta)
    for m in (2, 3, 4):
        outline += _ICE_ROUGHNESS * rng.normal() * np.cos(m * theta + rng.uniform(0, 2 * math.pi))
    r_theta = radius_px * outline
    chord_angstrom = 2.0 * np.sqrt(np.clip(r_theta**2 - x * x - y * y, 0.0, None))
    chord_angstrom *= pixel_size_angstrom
    sigma = interaction_constant_rad_per_v_angstrom(voltage_kv)
    return sigma * ICE_MEAN_INNER_POTENTIAL_V * density * chord_angstrom


def carbon_edge_phase(
    rng: np.random.Generator,
    canvas_px: int,
    *,
    box_px: int,
    pixel_size_angstrom: float,
    voltage_kv: float,
) -> np.ndarray:
    """``(c, c)`` phase of the straight edge of a 5-15 nm carbon film crossing the box.

    The edge runs at a random angle, within 35 % of the box from its centre, softened over a
    pixel; the film's thickness varies by 15 % rms with an 8-A correlation length (amorphous
    texture).
    """
    x, y = _grid(canvas_px)
    angle = rng.uniform(0, 2 * math.pi)
    offset_px = rng.uniform(-0.35, 0.35) * box_px
    distance = x * math.cos(angle) + y * math.sin(angle) - offset_px
    film = 0.5 * (1.0 + np.tanh(distance))
    thickness = rng.uniform(*_CARBON_THICKNESS_ANGSTROM)
    texture = _smooth_noise(rng, canvas_px, _CARBON_TEXTURE_ANGSTROM / pixel_size_angstrom)
    sigma = interaction_constant_rad_per_v_angstrom(voltage_kv)
    projected = thickness * film * (1.0 + _CARBON_TEXTURE_RMS * texture)
    return sigma * CARBON_MEAN_INNER_POTENTIAL_V * projected


def _smooth_noise(rng: np.random.Generator, canvas_px: int, length_px: float) -> np.ndarray:
    """Gaussian random field of unit variance and Gaussian correlation of ``length_px``."""
    white = rng.normal(size=(canvas_px, canvas_px))
    k = np.fft.fftfreq(canvas_px)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    field = np.fft.ifft2(np.fft.fft2(white) * np.exp(-2.0 * (math.pi * length_px) ** 2 * k2)).real
    return field / max(float(field.std()), 1e-12)
