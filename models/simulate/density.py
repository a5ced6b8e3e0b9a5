"""A specimen's Coulomb potential on a 3D grid: :func:`specimen_map`, the truth that
reconstructions from simulated particles are compared with."""

from __future__ import annotations

import torch

from causalscope.models.grids import splat_trilinear
from causalscope.models.simulate.specimen import Specimen, composite_form_factor

__all__ = ["specimen_map"]


def specimen_map(
    specimen: Specimen, *, box_px: int, pixel_size_angstrom: float, voltage_kv: float = 300.0
) -> torch.Tensor:
    """``(b, b, b)`` map (index ``[z, y, x]``, centre ``b // 2``) of ``specimen``'s atoms
    with their electron form factors (less the displaced solvent), as the particle simulator
    projects them: atoms deposited trilinearly, the transform multiplied by the composite form
    factor and divided by the deposit's ``sinc^2`` per axis. In the units of the deposit
    (form factor at zero frequency, A, per voxel); atoms outside the box are dropped."""
    if box_px < 4:
        raise ValueError(f"box_px must be >= 4, got {box_px}")
    coordinates = torch.as_tensor(specimen.coords_angstrom, dtype=torch.float64)
    coordinates = coordinates / pixel_size_angstrom + box_px // 2
    frequency = torch.fft.fftfreq(box_px, dtype=torch.float64)
    last = torch.fft.rfftfreq(box_px, dtype=torch.float64)
    kz, ky, kx = frequency[:, None, None], frequency[None, :, None], last[None, None, :]
    k_per_angstrom = torch.sqrt(kz**2 + ky**2 + kx**2) / pixel_size_angstrom
    weights, shape = composite_form_factor(specimen, k_per_angstrom, voltage_kv=voltage_kv)
    grid = torch.zeros(1, box_px, box_px, box_px, dtype=torch.float64)
    deposit = splat_trilinear(weights[:, None], coordinates.flip(-1), grid)[0]
    sinc2 = torch.sinc(kz) ** 2 * torch.sinc(ky) ** 2 * torch.sinc(kx) ** 2
    transform = torch.fft.rfftn(deposit) * shape / sinc2
    return torch.fft.irfftn(transform, s=deposit.shape).float()
