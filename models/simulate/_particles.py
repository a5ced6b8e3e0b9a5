"""Private: where the simulated particles sit, how they are turned, and their atoms per slab."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from causalscope.models.simulate.specimen import Specimen, random_rotations
from causalscope.models.units import ANGSTROM_PER_NM

__all__ = ["Particles", "draw_particles", "slab_atoms"]


@dataclass(frozen=True)
class Particles:
    """The particles of one exposure (``p`` placed).

    Attributes
    ----------
    centres
        ``(p, 2)`` ``[x, y]`` px in frame 0.
    depths_angstrom
        ``(p,)`` height of each centre in the ice, 0 at mid-thickness.
    rotations
        ``(p, 3, 3)`` rotation matrices.
    classes
        ``(p,)`` ``"intact"``, ``"broken"`` or ``"aggregate"``.
    """

    centres: np.ndarray
    depths_angstrom: np.ndarray
    rotations: np.ndarray
    classes: np.ndarray


def draw_particles(
    rng: np.random.Generator,
    specimen: Specimen,
    *,
    n_particles: int,
    size_px: int,
    pixel_size_angstrom: float,
    ice_thickness_nm: float,
    broken_fraction: float,
    aggregate_fraction: float,
) -> Particles:
    """Up to ``n_particles`` non-overlapping particles in the image, inside the ice, at random
    orientations, each intact, broken or an aggregate with the given probabilities."""
    radius_px = specimen.radius_angstrom / pixel_size_angstrom
    centres = _place_particles(rng, n_particles, size_px=size_px, radius_px=radius_px)
    n_placed = len(centres)
    thickness_a = ice_thickness_nm * ANGSTROM_PER_NM
    z_room = max(0.0, thickness_a / 2 - specimen.radius_angstrom)
    depths_a = rng.uniform(-z_room, z_room, size=n_placed)
    rotations = random_rotations(rng, n_placed)
    classes = rng.choice(
        ["intact", "broken", "aggregate"],
        size=n_placed,
        p=_class_probabilities(broken_fraction, aggregate_fraction),
    )
    return Particles(centres, depths_a, rotations, classes)


def _place_particles(
    rng: np.random.Generator, n: int, *, size_px: int, radius_px: float
) -> np.ndarray:
    """Up to ``n`` centres ``[x, y]`` inside the image, at least a diameter apart."""
    if n == 0:
        return np.zeros((0, 2))
    lo, hi = radius_px, size_px - radius_px
    if hi <= lo:
        return np.zeros((0, 2))
    placed: list[np.ndarray] = []
    min_d2 = (2.0 * radius_px) ** 2
    for _ in range(60):
        candidates = rng.uniform(lo, hi, size=(4 * n, 2))
        for c in candidates:
            if placed:
                arr = np.asarray(placed)
                if np.min(np.sum((arr - c) ** 2, axis=1)) < min_d2:
                    continue
            placed.append(c)
            if len(placed) == n:
                return np.asarray(placed)
    return np.asarray(placed)


def _class_probabilities(broken: float, aggregate: float) -> list[float]:
    intact = max(0.0, 1.0 - broken - aggregate)
    total = intact + broken + aggregate
    return [intact / total, broken / total, aggregate / total]


def slab_atoms(
    atom_weights: torch.Tensor,
    specimen: Specimen,
    particles: Particles,
    in_slab: np.ndarray,
    *,
    apix: float,
    offset: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Projected atom positions (canvas px) and weights of the particles in one slab."""
    weights_all = atom_weights.numpy()
    broken_keep = specimen.coords_angstrom[:, 0] > -0.2 * specimen.radius_angstrom
    points: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    for i in np.flatnonzero(in_slab):
        coords, w = specimen.coords_angstrom, weights_all
        if particles.classes[i] == "broken":
            coords, w = coords[broken_keep], w[broken_keep]
        copies = [np.zeros(2)]
        if particles.classes[i] == "aggregate":
            # a clump of 3-5 copies, overlapping, at random orientations
            n_extra = int(rng.integers(2, 5))
            step = 1.2 * specimen.radius_angstrom / apix
            copies += [step * rng.normal(size=2) / 1.4 for _ in range(n_extra)]
        for j, extra in enumerate(copies):
            rotation = particles.rotations[i] if j == 0 else random_rotations(rng, 1)[0]
            xy = (coords @ rotation.T)[:, :2] / apix + particles.centres[i] + extra + offset
            points.append(xy)
            weights.append(w)
    if not points:
        return np.zeros((0, 2)), np.zeros(0)
    return np.concatenate(points), np.concatenate(weights)
