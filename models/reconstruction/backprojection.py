"""CTF-weighted reconstruction that grows particle by particle: :class:`Accumulator`.

Each particle adds ``CTF * X`` and ``CTF^2`` at its central slice of the map's padded half
transform (trilinear insertion); the map is ``sum(CTF X) / (sum(CTF^2) + 1/SNR)``, a Wiener
filter whose regularisation comes from the half-maps' FSC once there is one (RELION's
``tau2``), then the insertion kernel's transfer is divided out. New particles are added, never
recomputed, and two accumulators of disjoint particles add up to the accumulator of all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from causalscope.models.grids import splat_trilinear
from causalscope.models.reconstruction._fourier import (
    gridding_correction,
    image_frequencies,
    padded_size,
    volume_coordinates,
)
from causalscope.models.reconstruction.projection import shift_phase

__all__ = ["Accumulator", "shell_index"]

#: regularisation (as a share of the largest CTF^2 sum) before any FSC is known
_DEFAULT_REGULARISATION = 1e-3
#: slice samples inserted per call: the insertion's temporaries take a few hundred bytes per
#: sample (0.4 GB a chunk). Chunks are also faster on a CPU (fewer page faults): 1,000
#: particles at box 64 took 2.7-3.3 ms each in chunks of 126 and 4.7 ms in one call (2.0-2.3
#: GB); at box 128, 17-19 ms in chunks of 32-128 and 20-22 ms in chunks of 256.
_SAMPLES_PER_CHUNK = 1 << 20


def shell_index(
    size_px: int, *, rfft: bool = True, device: torch.device | None = None
) -> torch.Tensor:
    """Integer Fourier shell (radius in samples) of each element of a centred-then-shifted
    3D transform of an ``n`` cube: ``(n, n, n//2 + 1)`` for the half (rfft) layout used here."""
    centre = size_px // 2
    axis = torch.arange(size_px, device=device) - centre
    last = torch.arange(size_px // 2 + 1, device=device) if rfft else axis
    radius = torch.sqrt(
        axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + last[None, None, :] ** 2
    )
    return torch.round(radius).long()


class Accumulator:
    """The running sums of one set of particles (one half-set) for a ``box_px`` map."""

    def __init__(
        self,
        box_px: int,
        *,
        pad_factor: float = 2.0,
        symmetry: torch.Tensor | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        if box_px < 4 or box_px % 2:
            raise ValueError(f"box_px must be even and >= 4, got {box_px}")
        if symmetry is not None and (symmetry.ndim != 3 or symmetry.shape[1:] != (3, 3)):
            raise ValueError(f"symmetry must be (g, 3, 3), got {tuple(symmetry.shape)}")
        #: the point group's rotations (:mod:`.symmetry`): each particle is added at its pose
        #: times each of them
        self.symmetry = None if symmetry is None else symmetry.to(torch.float32)
        self.box_px = box_px
        self.padded_px = padded_size(box_px, pad_factor)
        shape = (self.padded_px, self.padded_px, self.padded_px // 2 + 1)
        self.data = torch.zeros(shape, dtype=torch.complex64, device=device)
        self.weight = torch.zeros(shape, dtype=torch.float32, device=device)
        self.count = 0

    def add(
        self,
        images: torch.Tensor,
        rotations: torch.Tensor,
        ctf: torch.Tensor,
        *,
        shifts_px: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
        max_frequency: float = 0.5,
    ) -> None:
        """Insert ``(n, b, b)`` images at their poses ``(n, 3, 3)`` (RELION's matrices).

        ``ctf`` ``(n, p, p//2 + 1)`` is each image's CTF on the rfft2 grid of the *padded* box
        ``p`` (:attr:`padded_px`); ``shifts_px`` ``(n, 2)`` ``[x, y]`` are RELION's origin
        offsets (the particle's centre sits at the box centre minus them); ``weights`` ``(n,)``
        scale each particle (posterior probabilities); only frequencies up to
        ``max_frequency`` cycles per pixel are inserted (the current resolution limit of ab
        initio: fewer samples, and no noise beyond it).
        """
        if not 0 < max_frequency <= 0.5:
            raise ValueError(f"max_frequency must be in (0, 0.5] cycles/px, got {max_frequency}")
        n, b = images.shape[0], self.box_px
        if images.shape[1:] != (b, b):
            raise ValueError(f"images must be (n, {b}, {b}), got {tuple(images.shape)}")
        p = self.padded_px
        if ctf.shape != (n, p, p // 2 + 1):
            raise ValueError(
                f"ctf must be (n, {p}, {p // 2 + 1}) for the padded box, got {tuple(ctf.shape)}"
            )
        # in chunks, so that memory does not grow with the number of particles added at once
        copies = 1 if self.symmetry is None else len(self.symmetry)
        step = max(1, _SAMPLES_PER_CHUNK // (copies * p * (p // 2 + 1)))
        for first in range(0, n, step):
            part = slice(first, first + step)
            self._insert(
                images[part],
                rotations[part],
                ctf[part],
                None if shifts_px is None else shifts_px[part],
                None if weights is None else weights[part],
                max_frequency,
            )
        self.count += n

    def forget(self, keep: float) -> None:
        """Scale the sums by ``keep`` in ``[0, 1]``: older particles count less than the next
        ones (ab initio's running average)."""
        if not 0 <= keep <= 1:
            raise ValueError(f"keep must be in [0, 1], got {keep}")
        self.data = self.data * keep
        self.weight = self.weight * keep

    def _insert(
        self,
        images: torch.Tensor,
        rotations: torch.Tensor,
        ctf: torch.Tensor,
        shifts_px: torch.Tensor | None,
        weights: torch.Tensor | None,
        max_frequency: float = 0.5,
    ) -> None:
        """:meth:`add` for a chunk of particles (the count aside)."""
        n, b, p = images.shape[0], self.box_px, self.padded_px
        device = self.data.device
        pad = (p - b) // 2
        padded = F.pad(images.to(device, torch.float32), [pad, p - b - pad] * 2)
        transform = torch.fft.rfft2(torch.fft.ifftshift(padded, dim=(-2, -1)))
        if shifts_px is not None:
            transform = transform * shift_phase(p, shifts_px.to(device, torch.float32))
        ctf = ctf.to(device, torch.float32)
        if weights is not None:
            ctf_weight = weights.to(device, torch.float32)[:, None, None]
        else:
            ctf_weight = torch.ones((n, 1, 1), device=device)
        data = transform * ctf * ctf_weight
        power = ctf * ctf * ctf_weight
        frequencies = image_frequencies(p, device=device)
        keep = (frequencies.norm(dim=-1) <= max_frequency) & ~(
            (frequencies[..., 0] == 0) & (frequencies[..., 1] < 0)
        )
        values, power = data[:, keep], power[:, keep]
        rotations = rotations.to(device, torch.float32)
        if self.symmetry is not None:  # every symmetry mate: (n * g) poses
            g = len(self.symmetry)
            rotations = (rotations[:, None] @ self.symmetry.to(device)[None]).reshape(-1, 3, 3)
            values, power = values.repeat_interleave(g, 0), power.repeat_interleave(g, 0)
        coordinates, conjugate = volume_coordinates(frequencies[keep], rotations, p)
        values = torch.where(conjugate, values.conj(), values)
        stacked = torch.stack([values.real, values.imag, power], dim=-1)
        grid = torch.stack([self.data.real, self.data.imag, self.weight], dim=0)
        grid = splat_trilinear(stacked.reshape(-1, 3), coordinates.reshape(-1, 3), grid)
        self.data = torch.complex(grid[0], grid[1])
        self.weight = grid[2].contiguous()

    def merged(self, other: Accumulator) -> Accumulator:
        """The accumulator of both sets of particles (the full map from two half-sets)."""
        if (other.box_px, other.padded_px) != (self.box_px, self.padded_px):
            raise ValueError(
                f"cannot merge a box {other.box_px} accumulator into box {self.box_px}"
            )
        out = Accumulator(
            self.box_px,
            pad_factor=self.padded_px / self.box_px,
            symmetry=self.symmetry,
            device=self.data.device,
        )
        out.data = self.data + other.data
        out.weight = self.weight + other.weight
        out.count = self.count + other.count
        return out

    def reconstruct(self, *, spectral_snr: torch.Tensor | None = None) -> torch.Tensor:
        """``(b, b, b)`` map (index ``[z, y, x]``).

        ``spectral_snr`` ``(s,)`` per Fourier shell of the *padded* grid (shell ``i`` at
        ``i / padded_px`` cycles per pixel): the Wiener term is ``mean_shell(CTF^2 sum) / SNR``;
        without it a small constant keeps empty voxels at zero.
        """
        p = self.padded_px
        if spectral_snr is None:
            regulariser = _DEFAULT_REGULARISATION * self.weight.max().clamp(min=1e-12)
        else:
            shells = shell_index(p, device=self.weight.device).clamp(max=len(spectral_snr) - 1)
            sums = torch.zeros(len(spectral_snr), device=self.weight.device).index_add_(
                0, shells.flatten(), self.weight.flatten()
            )
            counts = torch.bincount(shells.flatten(), minlength=len(spectral_snr)).clamp(min=1)
            mean_weight = sums / counts
            snr = spectral_snr.to(self.weight.device).clamp(min=1e-6)
            regulariser = (mean_weight / snr)[shells]
        denominator = self.weight + regulariser
        # shells no particle reached (inserted only to a resolution limit) stay zero
        transform = torch.where(denominator > 0, self.data / denominator.clamp(min=1e-30), 0)
        transform = torch.fft.ifftshift(transform, dim=(-3, -2))
        volume = torch.fft.fftshift(torch.fft.irfftn(transform, s=(p, p, p), dim=(-3, -2, -1)))
        volume = volume / gridding_correction(p, device=volume.device)
        start = (p - self.box_px) // 2
        window = slice(start, start + self.box_px)
        return volume[window, window, window].contiguous()
