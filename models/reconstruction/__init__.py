"""Reconstruction from particles: projection, CTF-weighted backprojection, FSC, forecasts.

- :class:`Projector`, :func:`shift_phase` (:mod:`.projection`): central slices of a map.
- :class:`Accumulator` (:mod:`.backprojection`): sums that grow particle by particle.
- :func:`half_map_fsc`, :func:`fsc_resolution_angstrom`, :func:`soft_spherical_mask`
  (:mod:`.fsc`): gold-standard FSC, masked with phase-randomisation correction.
- :func:`fit_rosenthal_henderson`, :func:`doubling_subsets` (:mod:`.forecast`).
- :func:`orientation_coverage` (:mod:`.coverage`).
- :class:`ParticleCtfs` (:mod:`.particle_ctf`); :func:`symmetry_matrices`,
  :func:`symmetric_angle_deg` (:mod:`.symmetry`).
- :class:`RunningRefinement` (:mod:`.refine`), on :mod:`.alignment`: gold-standard
  refinement batch by batch.
- :func:`ab_initio` (:mod:`.ab_initio`): a map without a reference (SGD over pose posteriors,
  :func:`.alignment.posterior_search`); :func:`align_map`, :func:`match_hand`,
  :func:`mirror_map` (:mod:`.map_align`): a map superposed on another in either hand.

Poses are RELION's (:mod:`models.rotations`); maps are ``(b, b, b)`` indexed ``[z, y, x]``
with the centre at ``b // 2``; images ``(b, b)`` with the centre at ``(b // 2, b // 2)``.
"""

from causalscope.models.reconstruction.ab_initio import (
    AbInitioResult,
    AbInitioSettings,
    AbInitioStep,
    ab_initio,
    with_hand,
)
from causalscope.models.reconstruction.backprojection import Accumulator, shell_index
from causalscope.models.reconstruction.coverage import OrientationCoverage, orientation_coverage
from causalscope.models.reconstruction.forecast import (
    RosenthalHenderson,
    doubling_subsets,
    fit_rosenthal_henderson,
)
from causalscope.models.reconstruction.fsc import (
    HalfMapFsc,
    fsc_resolution_angstrom,
    half_map_fsc,
    soft_spherical_mask,
)
from causalscope.models.reconstruction.map_align import (
    Handedness,
    MapAlignment,
    align_map,
    apply_alignment,
    match_hand,
    mirror_map,
)
from causalscope.models.reconstruction.particle_ctf import ParticleCtfs
from causalscope.models.reconstruction.projection import Projector, shift_phase
from causalscope.models.reconstruction.symmetry import symmetric_angle_deg, symmetry_matrices

__all__ = [
    "AbInitioResult",
    "AbInitioSettings",
    "AbInitioStep",
    "Accumulator",
    "HalfMapFsc",
    "Handedness",
    "MapAlignment",
    "OrientationCoverage",
    "ParticleCtfs",
    "Projector",
    "RosenthalHenderson",
    "ab_initio",
    "align_map",
    "apply_alignment",
    "doubling_subsets",
    "fit_rosenthal_henderson",
    "fsc_resolution_angstrom",
    "half_map_fsc",
    "match_hand",
    "mirror_map",
    "orientation_coverage",
    "shell_index",
    "shift_phase",
    "soft_spherical_mask",
    "symmetric_angle_deg",
    "symmetry_matrices",
    "with_hand",
]
