"""The specimen's 3D map: its projections equal the atoms projected in 2D, as the simulator
places them (``coords @ A.T``) at RELION's pose ``A``."""

from __future__ import annotations

import numpy as np
import torch

from causalscope.models.reconstruction import Projector
from causalscope.models.rotations import random_rotations
from causalscope.models.simulate.density import specimen_map
from causalscope.models.simulate.specimen import (
    composite_form_factor,
    gridding_correction,
    phantom_specimen,
    splat_bilinear,
)

BOX, APIX = 64, 3.0


def _projected_atoms(specimen, rotation: np.ndarray) -> torch.Tensor:  # type: ignore[no-untyped-def]
    xy = (specimen.coords_angstrom @ rotation.T)[:, :2] / APIX + BOX // 2
    ky = torch.fft.fftfreq(BOX, dtype=torch.float64)[:, None]
    kx = torch.fft.rfftfreq(BOX, dtype=torch.float64)[None, :]
    k = torch.sqrt(kx**2 + ky**2) / APIX
    weights, shape = composite_form_factor(specimen, k, voltage_kv=300.0)
    deposit = splat_bilinear(torch.as_tensor(xy), weights, (BOX, BOX))
    transform = torch.fft.rfft2(deposit) * shape * gridding_correction(kx, ky)
    return torch.fft.irfft2(transform, s=(BOX, BOX)).float()


def test_the_map_summed_along_z_is_the_atoms_projected_in_2d() -> None:
    specimen = phantom_specimen()
    volume = specimen_map(specimen, box_px=BOX, pixel_size_angstrom=APIX)
    expected = _projected_atoms(specimen, np.eye(3))
    assert float((volume.sum(dim=0) - expected).norm() / expected.norm()) < 1e-4


def test_projections_of_the_map_match_the_simulators_placement_of_atoms() -> None:
    specimen = phantom_specimen()
    projector = Projector(specimen_map(specimen, box_px=BOX, pixel_size_angstrom=APIX))
    rotations = random_rotations(np.random.default_rng(0), 3)
    images = projector.project(torch.as_tensor(rotations, dtype=torch.float32))
    k = torch.sqrt(torch.fft.fftfreq(BOX)[:, None] ** 2 + torch.fft.rfftfreq(BOX)[None, :] ** 2)
    band = (k > 0) & (k <= 0.35)  # to 8.6 A; nearer Nyquist trilinear interpolation loses more

    def error(image: torch.Tensor, expected: torch.Tensor) -> float:
        a, b = torch.fft.rfft2(image)[band], torch.fft.rfft2(expected)[band]
        return float((a - b).norm() / b.norm())

    for rotation, image in zip(rotations, images, strict=True):
        expected = _projected_atoms(specimen, rotation)
        right, transposed = (
            error(image, expected),
            error(image, _projected_atoms(specimen, rotation.T)),
        )
        # measured: right 0.019-0.022, transposed 0.16-0.17
        assert right < 0.06
        # the phantom is a near-spherical shell: a wrong pose differs only in its lumps
        assert transposed > 3 * right
