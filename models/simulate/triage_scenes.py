"""Whole micrographs of the kinds an operator triages: empty holes, bare ice, crystalline ice,
contamination, drift and usable ones, with their truth.

Built on :func:`models.simulate.simulate_exposure` (a drift-free single frame of the whole dose,
its expected counts kept), then changed where the weak-phase model does not reach, before the
Poisson counts are drawn:

- ``empty``: no specimen in the beam, so no scattering: every pixel expects ``dose * A_px``.
- ``crystalline_ice``: in domains of 50-150 nm the ice is a crystal; its lattice planes
  (hexagonal ice's 3.90, 3.67 and 3.44 A spacings, cubic ice's 3.67 A) modulate the counts by
  2-5 % (diffraction contrast), three in-plane directions 60 degrees apart per domain.
- ``contaminated``: one cause per micrograph (``detail``). Dense bodies scatter outside the
  objective aperture, so they darken by mass thickness, ``exp(-t / L_aperture)`` (``L`` =
  300 nm): ``ice_blobs`` (ethane/ice balls 30-80 nm across the image's field), ``aggregates``
  (clumps of hundreds of particle-sized spheres), ``carbon_edge`` (a 10-40 nm carbon film over a
  quarter to two thirds of the field), ``crack`` (a band 150-400 A wide without ice, brighter),
  ``drift`` (a straight blur of 5-20 px during the exposure: the signal is smeared, the counting
  noise is not).
- ``usable``: particles in ice covering 4-25 % of the field; a third of them hold one small
  ice contaminant (under 1.5 % of the area), as real micrographs often do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from causalscope.models.simulate.exposure import ExposureParameters, simulate_exposure
from causalscope.models.simulate.specimen import phantom_specimen

__all__ = [
    "CONTAMINATION_KINDS",
    "TRIAGE_KINDS",
    "TriageScene",
    "simulate_triage_micrograph",
]

TRIAGE_KINDS = ("empty", "ice_only", "crystalline_ice", "contaminated", "usable")
CONTAMINATION_KINDS = ("ice_blobs", "aggregates", "carbon_edge", "crack", "drift")

#: mean free path for scattering outside a typical objective aperture, nm (amorphous ice)
APERTURE_MEAN_FREE_PATH_NM = 300.0
#: lattice spacings of crystalline ice, A: hexagonal (100), (002), (101); cubic (111) = 3.67
ICE_LATTICE_SPACINGS_ANGSTROM = (3.90, 3.67, 3.44)
_PARTICLE_RADIUS_ANGSTROM = 60.0  # the built-in phantom's outer radius


@dataclass(frozen=True)
class TriageScene:
    """A simulated micrograph ``(h, w)`` float32 counts, its class and its truth.

    ``transmission`` ``(h, w)``: the expected counts with the contamination (or crack) over
    those without it (1 where there is none; None for empty and crystalline scenes);
    ``truth["particles"]``: the particles' ``[x, y]`` centres (px).
    """

    image: np.ndarray
    kind: str
    detail: str
    pixel_size_angstrom: float
    truth: dict[str, Any] = field(default_factory=dict)
    transmission: np.ndarray | None = field(default=None, repr=False)


def simulate_triage_micrograph(
    kind: str,
    *,
    size_px: int = 512,
    pixel_size_angstrom: float = 4.0,
    dose_e_per_a2: float = 40.0,
    seed: int = 0,
    detail: str | None = None,
    coverage: float | None = None,
) -> TriageScene:
    """One micrograph of class ``kind`` (one of :data:`TRIAGE_KINDS`).

    ``detail`` picks the cause of a ``contaminated`` micrograph (one of
    :data:`CONTAMINATION_KINDS`; drawn from ``seed`` when None). Ice 20-60 nm, defocus
    1-2.5 um (300 kV, Cs 2.7 mm) are drawn from ``seed``. Crystalline ice needs
    ``pixel_size_angstrom <= 1.7`` (its 3.44-3.90 A planes inside Nyquist). ``coverage``:
    the share of the field the particles' discs would cover (default drawn in 4-25 %; a
    crowded field 40-50 %, where many touch: they are placed at least a diameter apart, which
    fills at most about 54 % of a plane).
    """
    if coverage is not None and not 0.0 <= coverage <= 0.54:
        raise ValueError(f"coverage must lie in [0, 0.54], got {coverage}")
    if kind not in TRIAGE_KINDS:
        raise ValueError(f"kind must be one of {TRIAGE_KINDS}, got {kind!r}")
    if kind == "crystalline_ice" and pixel_size_angstrom > 1.7:
        raise ValueError(
            f"crystalline ice needs pixel_size_angstrom <= 1.7, got {pixel_size_angstrom}"
        )
    if detail is not None and detail not in CONTAMINATION_KINDS:
        raise ValueError(f"detail must be one of {CONTAMINATION_KINDS}, got {detail!r}")
    rng = np.random.default_rng(seed)
    apix = pixel_size_angstrom
    dose_px = dose_e_per_a2 * apix**2
    truth: dict[str, Any] = {"kind": kind, "dose_e_per_a2": dose_e_per_a2}
    if kind == "empty":
        expected = np.full((size_px, size_px), dose_px)
        return _finish(rng, expected, kind, "", apix, truth)
    particles = kind in ("usable", "contaminated")
    area_a2 = (size_px * apix) ** 2
    drawn = rng.uniform(0.04, 0.25) if particles else 0.0  # drawn either way: same scenes
    share = drawn if coverage is None or not particles else coverage
    n_particles = int(share * area_a2 / (math.pi * _PARTICLE_RADIUS_ANGSTROM**2))
    defocus = rng.uniform(10_000.0, 25_000.0)
    ice_nm = rng.uniform(20.0, 60.0)
    params = ExposureParameters(
        size_px=size_px,
        n_frames=1,
        pixel_size_angstrom=apix,
        dose_e_per_a2=dose_e_per_a2,
        defocus_u_angstrom=defocus + 200.0,
        defocus_v_angstrom=defocus - 200.0,
        defocus_angle_deg=float(rng.uniform(0, 180)),
        ice_thickness_nm=ice_nm,
        drift_total_px=0.0,
        drift_jitter_px=0.0,
        local_motion_px=0.0,
        intra_frame_blur=False,
        n_particles=n_particles,
        seed=int(rng.integers(2**31)),
    )
    sim = simulate_exposure(params, specimen=phantom_specimen(), keep_expected=True)
    assert sim.expected_frames is not None  # keep_expected=True
    expected = sim.expected_frames[0].astype(np.float64)
    truth.update(
        ice_thickness_nm=ice_nm,
        defocus_angstrom=defocus,
        n_particles=sim.truth["n_particles_placed"],
        particles=sim.truth["particles"],
    )
    detail_out = ""
    clean = expected.copy()
    if kind == "crystalline_ice":
        expected *= 1.0 + _ice_lattice(rng, size_px, apix)
    elif kind == "contaminated":
        detail_out = detail or str(rng.choice(CONTAMINATION_KINDS))
        expected = _contaminate(rng, expected, detail_out, apix=apix, ice_nm=ice_nm)
    elif kind == "usable" and rng.random() < 1 / 3:
        radius_px = rng.uniform(1.5, 2.5) * _PARTICLE_RADIUS_ANGSTROM / apix
        radius_px = min(radius_px, 0.068 * size_px)  # at most 1.5 % of the field
        expected *= _absorption(_ball_chords_px(rng, size_px, [radius_px]) * apix)
    transmission = None
    if kind != "crystalline_ice":
        transmission = (expected / np.maximum(clean, 1e-12)).astype(np.float32)
    return _finish(rng, expected, kind, detail_out, apix, truth, transmission)


def _finish(
    rng: np.random.Generator,
    expected: np.ndarray,
    kind: str,
    detail: str,
    apix: float,
    truth: dict[str, Any],
    transmission: np.ndarray | None = None,
) -> TriageScene:
    counts = rng.poisson(np.clip(expected, 0.0, None)).astype(np.float32)
    truth["detail"] = detail
    return TriageScene(counts, kind, detail, apix, truth, transmission)


def _absorption(thickness_angstrom: np.ndarray) -> np.ndarray:
    """Transmitted fraction through ``thickness`` of dense matter (aperture-limited)."""
    return np.exp(-thickness_angstrom / (10.0 * APERTURE_MEAN_FREE_PATH_NM))


def _ice_lattice(rng: np.random.Generator, n: int, apix: float) -> np.ndarray:
    """Relative modulation of crystalline domains: each Voronoi cell (50-150 nm) is a crystal
    with probability 0.7 (the first always), its planes at one ice spacing in three directions
    60 degrees apart."""
    domain_px = rng.uniform(500.0, 1500.0) / apix
    n_seeds = max(2, int((n / domain_px) ** 2))
    seeds = rng.uniform(0, n, size=(n_seeds, 2))
    y, x = np.mgrid[0:n, 0:n].astype(np.float64)
    cell = np.argmin((x[..., None] - seeds[:, 0]) ** 2 + (y[..., None] - seeds[:, 1]) ** 2, -1)
    out = np.zeros((n, n))
    for c in range(n_seeds):
        if c > 0 and rng.random() > 0.7:  # the first domain is always a crystal
            continue
        spacing = float(rng.choice(ICE_LATTICE_SPACINGS_ANGSTROM)) / apix
        amplitude = rng.uniform(0.02, 0.05)
        theta0 = rng.uniform(0, math.pi / 3)
        wave = np.zeros((n, n))
        for j in range(3):
            theta = theta0 + j * math.pi / 3
            phase = 2 * math.pi * (x * math.cos(theta) + y * math.sin(theta)) / spacing
            wave += np.cos(phase + rng.uniform(0, 2 * math.pi))
        out += np.where(cell == c, amplitude * wave / 3.0, 0.0)
    return out


def _ball_chords_px(
    rng: np.random.Generator, n: int, radii_px: list[float], *, inside: float = 0.8
) -> np.ndarray:
    """Projected thickness (px) of balls of ``radii_px`` centred within ``inside`` of the field,
    their outlines wobbling with angular harmonics 2-4 (6 % each)."""
    y, x = np.mgrid[0:n, 0:n].astype(np.float64)
    total = np.zeros((n, n))
    for radius in radii_px:
        cx, cy = rng.uniform((1 - inside) / 2 * n, (1 + inside) / 2 * n, size=2)
        theta = np.arctan2(y - cy, x - cx)
        outline = np.ones_like(theta)
        for m in (2, 3, 4):
            outline += 0.06 * rng.normal() * np.cos(m * theta + rng.uniform(0, 2 * math.pi))
        r2 = (radius * outline) ** 2 - (x - cx) ** 2 - (y - cy) ** 2
        total += 2.0 * np.sqrt(np.clip(r2, 0.0, None))
    return total


def _contaminate(
    rng: np.random.Generator, expected: np.ndarray, detail: str, *, apix: float, ice_nm: float
) -> np.ndarray:
    n = expected.shape[0]
    field_a = n * apix
    if detail == "ice_blobs":
        # 1-4 balls covering 8-35 % of the field; thickness capped at 500 nm (the ice layer)
        target = rng.uniform(0.08, 0.35) * n * n
        count = int(rng.integers(1, 5))
        radii = list(np.sqrt(target / count / math.pi) * rng.uniform(0.8, 1.2, size=count))
        chords = np.minimum(_ball_chords_px(rng, n, radii) * apix, 5000.0)
        return expected * _absorption(chords)
    if detail == "aggregates":
        # clumps of 150-600 particle-sized spheres, each clump 150-400 nm across
        thickness = np.zeros((n, n))
        for _ in range(int(rng.integers(1, 4))):
            centre = rng.uniform(0.25 * n, 0.75 * n, size=2)
            spread_px = rng.uniform(500.0, 1500.0) / apix
            members = centre + rng.normal(
                scale=spread_px / 2, size=(int(rng.integers(150, 600)), 2)
            )
            grid = np.zeros((n, n))
            ij = np.clip(np.round(members).astype(int), 0, n - 1)
            np.add.at(grid, (ij[:, 1], ij[:, 0]), 1.0)
            sigma = _PARTICLE_RADIUS_ANGSTROM / apix / 1.5
            # each sphere ~ 2 r thick at its centre: a Gaussian of the same volume
            volume_a3 = 4 / 3 * math.pi * _PARTICLE_RADIUS_ANGSTROM**3
            thickness += ndimage.gaussian_filter(grid, sigma) * volume_a3 / apix**2
        return expected * _absorption(np.minimum(thickness, 5000.0))
    if detail == "carbon_edge":
        y, x = np.mgrid[0:n, 0:n].astype(np.float64) - n / 2
        angle = rng.uniform(0, 2 * math.pi)
        offset = rng.uniform(-0.2, 0.25) * n  # the film covers ~ 1/4 to 2/3 of the field
        film = 0.5 * (1 + np.tanh((x * math.cos(angle) + y * math.sin(angle) - offset) / 2))
        carbon_a = rng.uniform(100.0, 400.0)
        # amorphous carbon (2 g/cm^3) scatters about twice as strongly as ice per thickness
        return expected * _absorption(2.0 * carbon_a * film)
    if detail == "crack":
        y, x = np.mgrid[0:n, 0:n].astype(np.float64) - n / 2
        angle = rng.uniform(0, math.pi)
        offset = rng.uniform(-0.25, 0.25) * n
        width_px = rng.uniform(150.0, 400.0) / apix
        bend = rng.uniform(-0.3, 0.3) * (x * math.sin(angle)) ** 2 / n  # a slight curve
        distance = np.abs(x * math.cos(angle) + y * math.sin(angle) - offset - bend)
        gap = 0.5 * (1 - np.tanh((distance - width_px / 2) / 2))
        return expected / _absorption(ice_nm * 10.0 * gap)
    if detail == "drift":
        length_px = rng.uniform(5.0, 20.0)
        angle = rng.uniform(0, math.pi)
        return _line_blur(expected, length_px=length_px, angle_rad=angle)
    raise ValueError(f"unknown contamination {detail!r} (field {field_a:.0f} A)")


def _line_blur(image: np.ndarray, *, length_px: float, angle_rad: float) -> np.ndarray:
    """``image`` smeared along a straight path of ``length_px`` at ``angle_rad`` (periodic)."""
    ky = np.fft.fftfreq(image.shape[0])[:, None]
    kx = np.fft.rfftfreq(image.shape[1])[None, :]
    along = (kx * math.cos(angle_rad) + ky * math.sin(angle_rad)) * length_px
    return np.fft.irfft2(np.fft.rfft2(image) * np.sinc(along), s=image.shape)
