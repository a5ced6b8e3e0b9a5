"""The CTFs of a batch of particles: :class:`ParticleCtfs`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from causalscope.models.ctf import ctf_at

__all__ = ["ParticleCtfs"]


@dataclass(frozen=True)
class ParticleCtfs:
    """Per-particle CTF parameters (RELION's convention, :mod:`models.ctf`) of ``n`` particles.

    Voltage, Cs and amplitude contrast are one number for all, or ``(n,)`` (particles of
    several optics groups).

    ``phase_flipped``: the images were multiplied by the sign of their CTF when they were cut
    out (how the pipeline writes them), so the CTF they carry is ``|CTF|``.
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

    def __post_init__(self) -> None:
        for name in ("defocus_u_angstrom", "defocus_v_angstrom", "defocus_angle_deg"):
            object.__setattr__(self, name, np.array(getattr(self, name), dtype=np.float64))
        n = self.defocus_u_angstrom.shape
        for name in ("voltage_kv", "spherical_aberration_mm", "amplitude_contrast"):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.ndim and value.shape != n:
                raise ValueError(f"{name} must be a number or {n}, got shape {value.shape}")
        if len(n) != 1 or self.defocus_v_angstrom.shape != n or self.defocus_angle_deg.shape != n:
            raise ValueError(
                "defocus_u_angstrom, defocus_v_angstrom and defocus_angle_deg must be (n,) each, "
                f"got {self.defocus_u_angstrom.shape}, {self.defocus_v_angstrom.shape}, "
                f"{self.defocus_angle_deg.shape}"
            )
        if self.pixel_size_angstrom <= 0:
            raise ValueError(
                f"pixel_size_angstrom must be positive, got {self.pixel_size_angstrom}"
            )

    def __len__(self) -> int:
        return int(self.defocus_u_angstrom.shape[0])

    def take(self, index: np.ndarray | slice) -> ParticleCtfs:
        """The CTFs of a subset of the particles."""
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
        )

    def per_particle(self, name: str) -> np.ndarray:
        """``(n,)`` values of ``voltage_kv``, ``spherical_aberration_mm`` or
        ``amplitude_contrast``, one per particle."""
        value = np.asarray(getattr(self, name), dtype=np.float64)
        return np.broadcast_to(value, (len(self),)).copy()

    def rfft_grid(
        self,
        box_px: int,
        *,
        device: torch.device | None = None,
        pixel_size_angstrom: float | None = None,
    ) -> torch.Tensor:
        """``(n, b, b//2 + 1)`` CTFs on the rfft2 grid (unshifted) of ``box_px`` images.

        ``pixel_size_angstrom`` overrides the particles' own, for binned images.
        """
        apix = self.pixel_size_angstrom if pixel_size_angstrom is None else pixel_size_angstrom
        ky = torch.fft.fftfreq(box_px, d=apix, device=device)
        kx = torch.fft.rfftfreq(box_px, d=apix, device=device)
        grid_y, grid_x = torch.meshgrid(ky, kx, indexing="ij")

        def column(values: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(values, dtype=torch.float32, device=device)

        voltages = self.per_particle("voltage_kv")
        ctf = torch.empty((len(self), *grid_x.shape), device=device)
        for voltage in np.unique(voltages):
            group = np.flatnonzero(voltages == voltage)
            ctf[group] = ctf_at(
                grid_x,
                grid_y,
                defocus_u_angstrom=column(self.defocus_u_angstrom[group]),
                defocus_v_angstrom=column(self.defocus_v_angstrom[group]),
                defocus_angle_deg=column(self.defocus_angle_deg[group]),
                voltage_kv=float(voltage),
                spherical_aberration_mm=column(self.per_particle("spherical_aberration_mm")[group]),
                amplitude_contrast=column(self.per_particle("amplitude_contrast")[group]),
            )
        if self.bfactor_angstrom2:
            ctf = ctf * torch.exp(-self.bfactor_angstrom2 / 4 * (grid_x**2 + grid_y**2))
        return ctf.abs() if self.phase_flipped else ctf
