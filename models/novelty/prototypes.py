"""Prototypes of known junk for the novelty index: the simulator's junk and empty boxes.

``ice`` (dense round contaminants much larger or smaller than the particle: ice crystals,
ethane), ``carbon`` (the straight edge of a 5-15 nm carbon film crossing the box) and
``aggregate`` (3-5 particles stuck together, 1.2 radii apart rms) are drawn as the
simulator draws them (:mod:`models.simulate._junk`, the atoms of the built-in phantom for the
aggregates) as projected phase, protein bright, without CTF or noise: the same imaging as the
index's projections of maps (the embedding's band-pass takes out what a CTF-corrected class
average still differs by). They are drawn for particles of several radii (the phantom's 60 A
scaled to 36-132 A), so that junk next to a small or a large particle has a neighbour.
``empty`` is a box of white noise: what an average of picks on bare ice is once band-passed.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

__all__ = ["JUNK_LABELS", "junk_images"]

#: the junk kinds the index knows
JUNK_LABELS = ("ice", "carbon", "aggregate", "empty")
_SCALES = (0.6, 1.0, 1.5, 2.2)  # the phantom's radius (60 A) times these


def junk_images(
    per_kind: int = 64,
    *,
    seed: int = 0,
    pixel_size_angstrom: float = 4.0,
    box_px: int = 128,
) -> tuple[np.ndarray, np.ndarray]:
    """``(images (m, b, b) float32, labels (m,))``: ``per_kind`` prototypes of each junk kind
    of :data:`JUNK_LABELS` (module docstring), centre at ``b // 2``."""
    from causalscope.models.rotations import random_rotations
    from causalscope.models.simulate._junk import carbon_edge_phase, ice_blob_phase
    from causalscope.models.simulate.particle_stack import project_specimen
    from causalscope.models.simulate.specimen import phantom_specimen

    if per_kind < 1 or box_px < 16 or box_px % 2:
        raise ValueError(f"per_kind >= 1 and an even box_px >= 16 needed: {per_kind}, {box_px}")
    rng = np.random.default_rng(seed)
    base = phantom_specimen(seed=seed)
    apix = pixel_size_angstrom
    images: list[np.ndarray] = []
    labels: list[str] = []
    for i in range(per_kind):
        scale = _SCALES[i % len(_SCALES)] * rng.uniform(0.9, 1.1)
        radius_px = base.radius_angstrom * scale / apix
        centre = rng.uniform(-0.1, 0.1, size=2) * radius_px
        ice = ice_blob_phase(
            rng, box_px, centre_px=centre, particle_radius_px=radius_px,
            pixel_size_angstrom=apix, voltage_kv=300.0,
        )  # fmt: skip
        carbon = carbon_edge_phase(
            rng, box_px, box_px=int(2.4 * radius_px), pixel_size_angstrom=apix, voltage_kv=300.0
        )
        specimen = replace(base, coords_angstrom=base.coords_angstrom * scale)
        copies = int(rng.integers(3, 6))
        offsets = 1.2 * radius_px * rng.normal(size=(copies, 2)) / 1.4
        offsets -= offsets.mean(axis=0)
        aggregate = project_specimen(
            specimen, random_rotations(rng, copies), box_px=box_px, pixel_size_angstrom=apix,
            shifts_px=offsets, atom_stride=8,
        ).sum(axis=0)  # fmt: skip
        images += [ice, carbon, aggregate, rng.normal(size=(box_px, box_px))]
        labels += ["ice", "carbon", "aggregate", "empty"]
    return np.stack(images).astype(np.float32), np.asarray(labels)
