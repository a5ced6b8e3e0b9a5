"""The settings of :class:`~.class2d.Class2D` and the :class:`Assignment` of particles it
returns (defined here, exported from :mod:`.class2d`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Assignment", "Class2DSettings"]


@dataclass(frozen=True)
class Class2DSettings:
    """Settings of :class:`Class2D` (module docstring for the schedule)."""

    n_classes: int = 50
    #: the E-step never goes finer than this
    max_resolution_angstrom: float = 10.0
    #: the E-step's limit at the start, and the low-pass of the first classes
    initial_resolution_angstrom: float = 30.0
    #: translations searched, in pixels of the input images, on a grid of ``shift_step_px``
    max_shift_px: float = 4.0
    shift_step_px: float = 2.0
    #: in-plane rotations: at least ``min_rotations``, more as the resolution limit grows
    min_rotations: int = 36
    max_rotations: int = 72
    start_after: int = 0  # 0: 4 particles per class
    initial_passes: int = 4
    full_pass_below: int = 2000
    full_pass_every: int = 4
    forget: float = 0.0
    min_class_fraction: float = 0.2
    #: particles whose residual is this many robust standard deviations above their class's
    #: median are marked as outliers
    outlier_z: float = 3.5
    #: with it, a particle whose mean beyond its radius (a halo: ice and carbon reach past
    #: the particle, a protein does not) is ``outlier_z`` robust standard deviations from
    #: the particles' median is an outlier too
    particle_diameter_angstrom: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "n_classes": self.n_classes >= 1,
            "max_resolution_angstrom": self.max_resolution_angstrom > 0,
            "max_shift_px": self.max_shift_px >= 0,
            "shift_step_px": self.shift_step_px > 0,
            "min_rotations": 4 <= self.min_rotations <= self.max_rotations,
            "forget": 0 <= self.forget < 1,
            "full_pass_every": self.full_pass_every >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"Class2DSettings.{name} out of range: {getattr(self, name)!r}")

    def rotations(self, r_max: int) -> int:
        """In-plane rotations searched at a band of ``r_max`` rings: arc steps of about 2 px
        at its edge, as a multiple of 4, within ``[min_rotations, max_rotations]``."""
        n = 4 * math.ceil(math.pi * r_max / 4)
        return int(min(max(n, self.min_rotations), self.max_rotations))


@dataclass(frozen=True)
class Assignment:
    """Where particles went. A particle is its class average rotated counter-clockwise by
    ``psi_deg``, then shifted by ``shift_px`` ``[x, y]`` (pixels of the input images).

    ``class_index`` is -1 before the classes exist; ``posterior_max`` is the class's posterior;
    ``residual_z`` the robust z-score of the particle's residual (noise units, at its best
    pose) among the particles of its class, and ``outlier`` marks ``residual_z >
    outlier_z`` or a low-resolution power that many robust standard deviations above its
    class's (or the two z-scores adding up to more than :data:`._outliers.JOINT_Z`, or those
    and the mass's and the halo's within the class to more than
    :data:`._outliers.AGGREGATE_Z`), or a mean (the projected mass, the same from every
    view of one species) that many below its class's, or an in-plane contrast that many
    below its class's (a round blob in a class of a view; judged in classes whose average's
    turns can be told apart, :meth:`._em.EStep.in_plane_ratio`), or a mean or a halo
    (``Class2DSettings.particle_diameter_angstrom``) that many from all particles', or a
    low-resolution power or a structure around the particle (an aggregate's other
    particles: :func:`._outliers.background_statistics`) that many above all particles':
    particles the class does not explain (aggregates, carbon edges, ice and other junk
    that share a class with good particles, or make up a class; RELION's particle sorting
    does the same). Those flagged by their image alone (halo, mass, power, structure among
    all particles) do not enter the averages of classes where they are the minority.
    """

    ids: np.ndarray
    class_index: np.ndarray
    psi_deg: np.ndarray
    shift_px: np.ndarray
    posterior_max: np.ndarray
    residual_z: np.ndarray
    outlier: np.ndarray

    @classmethod
    def unassigned(cls, ids: np.ndarray) -> Assignment:
        """Particles ``ids`` before the classes exist (class -1)."""
        n = len(ids)
        zeros = np.zeros(n)
        return cls(ids, np.full(n, -1), zeros, np.zeros((n, 2)), zeros, zeros, zeros > 0)
