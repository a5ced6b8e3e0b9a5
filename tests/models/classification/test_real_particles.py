"""On real particles picked by experts (EMPIAR-10028 80S ribosomes, EMPIAR-10059 TRPV1, the
CryoPPP micrographs in ../shared/data/picking), 2D classification's per-particle junk flags
(misfit, power, projected mass, halo, the structure around a particle) and the split of
classes of two populations mark almost none: they are not tuned to the simulator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from causalscope.models.classification import Class2D, Class2DSettings
from causalscope.models.reconstruction import ParticleCtfs
from causalscope.models.restoration.normalise import normalise_particles

PICKING = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "picking"

pytestmark = [
    pytest.mark.shared_data,
    pytest.mark.skipif(not PICKING.is_dir(), reason=f"{PICKING} (real micrographs) is absent"),
]


def _boxes(folder: str, limit: int) -> tuple[torch.Tensor, float]:
    """Expert-picked boxes (1.5 diameters, protein bright, normalised) and the diameter (px)."""
    from causalscope.daemon.bench._cryoppp import load_cryoppp

    boxes = []
    for micrograph in load_cryoppp(PICKING / folder)[:limit]:
        b = 2 * round(0.75 * micrograph.diameter_px)
        image = -(micrograph.image - micrograph.image.mean()) / micrograph.image.std()
        h, w = image.shape
        for x, y in np.round(micrograph.truth_xy_px).astype(int):
            if b // 2 <= x < w - b // 2 and b // 2 <= y < h - b // 2:
                boxes.append(image[y - b // 2 : y + b // 2, x - b // 2 : x + b // 2])
    stack = torch.as_tensor(np.stack(boxes), dtype=torch.float32)
    return normalise_particles(stack, background_radius_px=0.375 * b), micrograph.diameter_px


def test_expert_picks_are_rarely_flagged_as_junk() -> None:
    folder = "cryoppp_10028"
    boxes, diameter_px = _boxes(folder, 5)
    n, apix = len(boxes), 5.0  # the PNGs' pixel size is not given; the flags do not use it
    ctf = ParticleCtfs(
        np.full(n, 15_000.0), np.full(n, 15_000.0), np.zeros(n), voltage_kv=300.0,
        spherical_aberration_mm=2.7, amplitude_contrast=0.1, pixel_size_angstrom=apix,
        phase_flipped=True,
    )  # fmt: skip
    settings = Class2DSettings(
        n_classes=4, initial_passes=2, particle_diameter_angstrom=diameter_px * apix
    )
    model = Class2D(box_px=int(boxes.shape[-1]), pixel_size_angstrom=apix, settings=settings)
    model.partial_fit(boxes, ctf, np.arange(n))
    outlier = model.reassign_all().outlier
    assert n >= 200
    # measured with 8 classes: 0.4 % of 826 ribosomes (10028, test and train), 0.5 % of 2,907
    # TRPV1 (10059 train: crowded, neighbours in the halo; too slow to load for the suite);
    # with the structure around a particle and the split of two-population classes, 0.9 % of
    # the 433 (10028, two random starts) and 1.1-2.1 % of the 2,907 (structure 0.5 %)
    assert outlier.mean() <= 0.02, (folder, n, outlier.mean())
