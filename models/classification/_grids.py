"""Private: the working grid of 2D classification (rotations, shifts, rings of an rfft2).

Conventions: an image's centre is pixel ``b // 2``; ``x`` is the column, ``y`` the row; an
in-plane rotation by ``psi`` turns the content counter-clockwise in ``(x, y)``
(``out(r) = in(R(-psi) r)``), and a shift ``t = [x, y]`` moves it by ``+t``
(``out(r) = in(r - t)``, spectrum times ``exp(-2 pi i k.t)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Grid", "gaussian_low_pass", "rotate_images", "shift_spectra"]


@dataclass(frozen=True)
class Grid:
    """The rfft2 grid of the ``b x b`` working box (pixel ``pixel_size_angstrom``)."""

    box: int
    pixel_size_angstrom: float
    fx: torch.Tensor  # (b, b//2+1) cycles/px
    fy: torch.Tensor
    ring: torch.Tensor  # (b, b//2+1) int: round(|f| * b)
    multiplicity: torch.Tensor  # 1 on the kx = 0 column, 2 elsewhere (the hidden half)

    @classmethod
    def of(
        cls, box: int, pixel_size_angstrom: float, *, device: torch.device | str = "cpu"
    ) -> Grid:
        """The grid of a ``box`` px box, its tensors on ``device``."""
        return cls(box, pixel_size_angstrom, *_frequencies(box)).to(device)

    def to(self, device: torch.device | str) -> Grid:
        """This grid with its tensors on ``device``."""
        fx, fy, ring, multiplicity = (
            t.to(device) for t in (self.fx, self.fy, self.ring, self.multiplicity)
        )
        return Grid(self.box, self.pixel_size_angstrom, fx, fy, ring, multiplicity)

    @property
    def device(self) -> torch.device:
        """Where its tensors are."""
        return self.fx.device

    @property
    def n_rings(self) -> int:
        """Rings 0 .. b // 2 (the FRC's rings)."""
        return self.box // 2 + 1

    @property
    def kx(self) -> torch.Tensor:
        """Frequencies in 1/A."""
        return self.fx / self.pixel_size_angstrom

    @property
    def ky(self) -> torch.Tensor:
        """Frequencies in 1/A."""
        return self.fy / self.pixel_size_angstrom

    def ring_of(self, resolution_angstrom: float) -> int:
        """The ring of ``resolution_angstrom``, within ``[2, box / 2 - 1]``."""
        ring = self.box * self.pixel_size_angstrom / resolution_angstrom
        return int(min(max(2, round(ring)), self.box // 2 - 1))

    def band(self, r_max: int) -> torch.Tensor:
        """Flat indices of the coefficients with ``1 <= ring <= r_max``."""
        keep = (self.ring >= 1) & (self.ring <= r_max)
        return torch.nonzero(keep.flatten()).flatten()

    def ring_mean(self, values: torch.Tensor) -> torch.Tensor:
        """``(..., n_rings)`` mean of ``(..., b, b//2+1)`` values over each ring, counting the
        hidden half of the spectrum."""
        ring = self.ring.flatten().clamp(max=self.n_rings - 1)
        w = self.multiplicity.flatten().to(values.dtype)
        flat = values.reshape(-1, ring.numel()) * w
        sums = torch.zeros(flat.shape[0], self.n_rings, dtype=values.dtype, device=values.device)
        sums.index_add_(1, ring, flat)
        counts = torch.zeros(self.n_rings, dtype=values.dtype, device=values.device)
        counts = counts.index_add_(0, ring, w)
        return (sums / counts.clamp(min=1)).reshape(*values.shape[:-2], self.n_rings)


def _frequencies(box: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(fx, fy, ring, multiplicity)`` of :class:`Grid` (on the CPU)."""
    fy = torch.fft.fftfreq(box, dtype=torch.float32)[:, None].expand(box, box // 2 + 1)
    fx = torch.fft.rfftfreq(box, dtype=torch.float32)[None, :].expand(box, box // 2 + 1)
    ring = torch.round(torch.sqrt(fx**2 + fy**2) * box).long()
    multiplicity = torch.where(fx == 0, 1.0, 2.0)
    return fx.contiguous(), fy.contiguous(), ring, multiplicity


def gaussian_low_pass(
    images: torch.Tensor, *, pixel_size_angstrom: float, resolution_angstrom: float
) -> torch.Tensor:
    """``(..., b, b)`` images times ``exp(-(k r)^2 / 2)`` in Fourier space (``k`` in 1/A,
    ``r`` the resolution): 0.61 of each amplitude kept at ``1 / r``."""
    b = images.shape[-1]
    fy = torch.fft.fftfreq(b, dtype=torch.float64, device=images.device)[:, None]
    fx = torch.fft.rfftfreq(b, dtype=torch.float64, device=images.device)[None, :]
    k = torch.sqrt(fx**2 + fy**2) / pixel_size_angstrom
    gauss = torch.exp(-((k * resolution_angstrom) ** 2) / 2.0).to(images.dtype)
    return torch.fft.irfft2(torch.fft.rfft2(images) * gauss, s=(b, b))


def rotate_images(images: torch.Tensor, psi_rad: torch.Tensor) -> torch.Tensor:
    """``(m, b, b)`` images rotated about ``b // 2`` by ``psi_rad`` ``(m,)`` (bicubic, zero
    outside)."""
    m, b = images.shape[0], images.shape[-1]
    psi = psi_rad.to(images.device)
    c, s = torch.cos(psi).float(), torch.sin(psi).float()
    # grid_sample wants, for each output pixel, where to read: R(-psi) r about the centre
    scale = 2.0 / b
    offset = (b // 2 + 0.5) * scale - 1.0  # the centre pixel in normalised coordinates
    theta = torch.zeros(m, 2, 3, device=images.device)
    theta[:, 0, 0], theta[:, 0, 1] = c, s
    theta[:, 1, 0], theta[:, 1, 1] = -s, c
    centre = torch.full((m, 2), offset, device=images.device)
    theta[:, :, 2] = centre - torch.einsum("mij,mj->mi", theta[:, :, :2], centre)
    grid = F.affine_grid(theta, [m, 1, b, b], align_corners=False)
    out = F.grid_sample(
        images[:, None].float(), grid, mode="bicubic", padding_mode="zeros", align_corners=False
    )
    return out[:, 0]


def shift_spectra(fx: torch.Tensor, fy: torch.Tensor, shifts_px: torch.Tensor) -> torch.Tensor:
    """``(..., *fx.shape)`` phase ramps ``exp(-2 pi i k.t)`` that move images by ``shifts_px``
    ``(..., 2)`` ``[x, y]`` (working pixels)."""
    tx = shifts_px[..., 0, None].to(torch.float32)
    ty = shifts_px[..., 1, None].to(torch.float32)
    phase = -2.0 * math.pi * (tx * fx.flatten() + ty * fy.flatten())
    return torch.polar(torch.ones_like(phase), phase).reshape(*shifts_px.shape[:-1], *fx.shape)
