"""The CTFs of a batch of particles: :class:`ParticleCtfs`, shared by 2D classification and
3D refinement."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from causalscope.models.ctf import ctf_at

__all__ = ["ParticleCtfs"]

_PER_PARTICLE = ("defocus_u_angstrom", "defocus_v_angstrom", "defocus_angle_deg")
_OPTICS = ("voltage_kv", "spherical_aberration_mm", "amplitude_contrast", "phase_shift_deg")


@dataclass(frozen=True)
class ParticleCtfs:
    """Per-particle CTF parameters (RELION's convention, :mod:`models.ctf`) of ``n`` particles.

    Defocus U/V and angle are ``(n,)``. Voltage, Cs, amplitude contrast and the phase-plate
    shift are one number for all or ``(n,)`` (particles of several optics groups).
    ``phase_flipped``: the images were multiplied by the sign of their CTF when they were cut
    out (how the pipeline writes them), so the CTF they carry is ``|CTF|``. The pixel size is
    the images' as given (before any binning).
    """

    defocus_u_angstrom: np.ndarray
    defocus_v_angstrom: np.ndarray
    defocus_angle_deg: np.ndarray
    voltage_kv: float | np.ndarray
    spherical_aberration_mm: float | np.ndarray
    amplitude_contrast: float | np.ndarray
    pixel_size_angstrom: float
    phase_flipped: bool = False
    bfactor_angstrom2: float = 0.0
    phase_shift_deg: float | np.ndarray = field(default=0.0)

    def __post_init__(self) -> None:
        for name in _PER_PARTICLE:
            value = np.atleast_1d(np.array(getattr(self, name), dtype=np.float64))
            object.__setattr__(self, name, value)
        n = self.defocus_u_angstrom.shape
        if len(n) != 1 or any(getattr(self, name).shape != n for name in _PER_PARTICLE):
            raise ValueError(
                "defocus_u_angstrom, defocus_v_angstrom and defocus_angle_deg must be (n,) each, "
                f"got {[getattr(self, name).shape for name in _PER_PARTICLE]}"
            )
        if not np.all(np.isfinite(self.defocus_u_angstrom)):
            raise ValueError("defocus_u_angstrom holds non-finite values")
        for name in _OPTICS:
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.ndim and value.shape != n:
                raise ValueError(f"{name} must be a number or {n}, got shape {value.shape}")
        contrast = np.asarray(self.amplitude_contrast)
        if np.any((contrast < 0) | (contrast >= 1)):
            raise ValueError(f"amplitude_contrast must be in [0, 1), got {self.amplitude_contrast}")
        if self.pixel_size_angstrom <= 0:
            raise ValueError(
                f"pixel_size_angstrom must be positive, got {self.pixel_size_angstrom}"
            )

    def __len__(self) -> int:
        return int(self.defocus_u_angstrom.shape[0])

    @property
    def n(self) -> int:
        """Number of particles."""
        return len(self)

    def per_particle(self, name: str) -> np.ndarray:
        """``(n,)`` values of ``voltage_kv``, ``spherical_aberration_mm``,
        ``amplitude_contrast`` or ``phase_shift_deg``, one per particle."""
        value = np.asarray(getattr(self, name), dtype=np.float64)
        return np.broadcast_to(value, (len(self),)).copy()

    def take(self, index: np.ndarray | slice | Sequence[int]) -> ParticleCtfs:
        """The CTFs of a subset of the particles."""
        index = index if isinstance(index, slice) else np.asarray(index)
        return ParticleCtfs(
            self.defocus_u_angstrom[index],
            self.defocus_v_angstrom[index],
            self.defocus_angle_deg[index],
            voltage_kv=self.per_particle("voltage_kv")[index],
            spherical_aberration_mm=self.per_particle("spherical_aberration_mm")[index],
            amplitude_contrast=self.per_particle("amplitude_contrast")[index],
            pixel_size_angstrom=self.pixel_size_angstrom,
            phase_flipped=self.phase_flipped,
            bfactor_angstrom2=self.bfactor_angstrom2,
            phase_shift_deg=self.per_particle("phase_shift_deg")[index],
        )

    @staticmethod
    def concatenate(parts: Sequence[ParticleCtfs]) -> ParticleCtfs:
        """One set of several (same pixel size, phase flipping and envelope)."""
        first = parts[0]
        shared = (first.pixel_size_angstrom, first.phase_flipped, first.bfactor_angstrom2)
        for part in parts[1:]:
            other = (part.pixel_size_angstrom, part.phase_flipped, part.bfactor_angstrom2)
            if other != shared:
                raise ValueError(
                    f"particle CTFs differ in pixel size, flipping or B: {other} vs {shared}"
                )
        joined = {
            name: np.concatenate(
                [p.per_particle(name) if name in _OPTICS else getattr(p, name) for p in parts]
            )
            for name in (*_PER_PARTICLE, *_OPTICS)
        }
        return ParticleCtfs(
            **joined,
            pixel_size_angstrom=first.pixel_size_angstrom,
            phase_flipped=first.phase_flipped,
            bfactor_angstrom2=first.bfactor_angstrom2,
        )

    def transfer(
        self,
        kx: torch.Tensor,
        ky: torch.Tensor,
        *,
        index: np.ndarray | None = None,
        rotation_rad: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(m, h, w)`` transfer (``|CTF|`` if phase-flipped, times the B-factor envelope) at
        frequencies ``kx, ky`` (1/A) of particles ``index`` (all by default). With
        ``rotation_rad`` ``(m,)``: the transfer of each image turned by that angle
        (counter-clockwise in ``x, y``), ``CTF(R(rotation)^-1 k)``."""
        idx = np.arange(len(self)) if index is None else np.asarray(index)
        angle = torch.as_tensor(self.defocus_angle_deg[idx], device=kx.device)
        if rotation_rad is not None:
            angle = angle + torch.rad2deg(rotation_rad.to(angle.device, torch.float64))
        voltages = self.per_particle("voltage_kv")[idx]

        def column(values: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(values, dtype=kx.dtype, device=kx.device)

        out = torch.empty((len(idx), *kx.shape), dtype=kx.dtype, device=kx.device)
        for voltage in np.unique(voltages):
            group = np.flatnonzero(voltages == voltage)
            out[group] = ctf_at(
                kx,
                ky,
                defocus_u_angstrom=column(self.defocus_u_angstrom[idx][group]),
                defocus_v_angstrom=column(self.defocus_v_angstrom[idx][group]),
                defocus_angle_deg=angle[group].to(kx.dtype),
                voltage_kv=float(voltage),
                spherical_aberration_mm=column(
                    self.per_particle("spherical_aberration_mm")[idx][group]
                ),
                amplitude_contrast=column(self.per_particle("amplitude_contrast")[idx][group]),
                phase_shift_deg=column(self.per_particle("phase_shift_deg")[idx][group]),
            )
        if self.bfactor_angstrom2:
            out = out * torch.exp(-self.bfactor_angstrom2 / 4 * (kx**2 + ky**2))
        return out.abs() if self.phase_flipped else out

    def rfft_grid(
        self,
        box_px: int,
        *,
        device: torch.device | str | None = None,
        pixel_size_angstrom: float | None = None,
    ) -> torch.Tensor:
        """``(n, b, b//2 + 1)`` transfer on the rfft2 grid (unshifted) of ``box_px`` images.

        ``pixel_size_angstrom`` overrides the particles' own, for binned images.
        """
        apix = self.pixel_size_angstrom if pixel_size_angstrom is None else pixel_size_angstrom
        ky = torch.fft.fftfreq(box_px, d=apix, device=device)
        kx = torch.fft.rfftfreq(box_px, d=apix, device=device)
        grid_y, grid_x = torch.meshgrid(ky, kx, indexing="ij")
        return self.transfer(grid_x, grid_y)
