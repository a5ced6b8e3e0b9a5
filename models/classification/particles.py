"""What 2D classification is given: particle images and each particle's CTF.

Images are ``(n, box, box)`` boxes as extraction writes them (centred on ``box // 2``,
inverted so that protein is bright, normalised); :class:`ParticleCtf` holds the per-particle CTF
in RELION's convention (:mod:`models.ctf`). For phase-flipped data the transfer the classifier
models is ``|CTF|``: the flip already corrected the sign.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from causalscope.models.ctf import ctf_at

__all__ = ["ParticleCtf", "fourier_crop"]


@dataclass(frozen=True)
class ParticleCtf:
    """The CTF of ``n`` particles.

    Attributes
    ----------
    defocus_u_angstrom, defocus_v_angstrom, defocus_angle_deg
        ``(n,)`` defocus (positive underfocus) and astigmatism angle of each particle.
    voltage_kv, spherical_aberration_mm, amplitude_contrast
        Optics shared by the particles.
    pixel_size_angstrom
        Pixel size of the images as given (before any binning).
    phase_flipped
        The images were multiplied by ``sign(CTF)`` (the transfer left is ``|CTF|``).
    phase_shift_deg
        ``(n,)`` phase-plate shift, zeros if absent.
    """

    defocus_u_angstrom: np.ndarray
    defocus_v_angstrom: np.ndarray
    defocus_angle_deg: np.ndarray
    voltage_kv: float
    spherical_aberration_mm: float
    amplitude_contrast: float
    pixel_size_angstrom: float
    phase_flipped: bool = True
    phase_shift_deg: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        arrays = {}
        for name in ("defocus_u_angstrom", "defocus_v_angstrom", "defocus_angle_deg"):
            arrays[name] = np.atleast_1d(np.asarray(getattr(self, name), dtype=np.float64))
            object.__setattr__(self, name, arrays[name])
        n = arrays["defocus_u_angstrom"].shape[0]
        shift = np.asarray(self.phase_shift_deg, dtype=np.float64)
        object.__setattr__(self, "phase_shift_deg", np.zeros(n) if shift.size == 0 else shift)
        for name, value in arrays.items():
            if value.shape != (n,):
                raise ValueError(f"{name} must be ({n},) like defocus_u, got {value.shape}")
        if self.phase_shift_deg.shape != (n,):
            raise ValueError(f"phase_shift_deg must be ({n},), got {self.phase_shift_deg.shape}")
        if not np.all(np.isfinite(arrays["defocus_u_angstrom"])):
            raise ValueError("defocus_u_angstrom holds non-finite values")
        if self.pixel_size_angstrom <= 0:
            raise ValueError(
                f"pixel_size_angstrom must be positive, got {self.pixel_size_angstrom}"
            )
        if not 0 <= self.amplitude_contrast < 1:
            raise ValueError(f"amplitude_contrast must be in [0, 1), got {self.amplitude_contrast}")

    @property
    def n(self) -> int:
        """Number of particles."""
        return int(self.defocus_u_angstrom.shape[0])

    def subset(self, index: np.ndarray) -> ParticleCtf:
        """The CTFs of particles ``index``."""
        return ParticleCtf(
            self.defocus_u_angstrom[index], self.defocus_v_angstrom[index],
            self.defocus_angle_deg[index], self.voltage_kv, self.spherical_aberration_mm,
            self.amplitude_contrast, self.pixel_size_angstrom, self.phase_flipped,
            self.phase_shift_deg[index],
        )  # fmt: skip

    def _optics(self) -> tuple[float, float, float, float, bool]:
        return (
            self.voltage_kv, self.spherical_aberration_mm, self.amplitude_contrast,
            self.pixel_size_angstrom, self.phase_flipped,
        )  # fmt: skip

    @staticmethod
    def concatenate(parts: list[ParticleCtf]) -> ParticleCtf:
        """One :class:`ParticleCtf` of several with the same optics."""
        first = parts[0]
        for p in parts[1:]:
            if p._optics() != first._optics():
                raise ValueError(
                    f"particle optics differ between batches: {p._optics()} vs {first._optics()}"
                )
        joined = {
            name: np.concatenate([getattr(p, name) for p in parts])
            for name in (*_PER_PARTICLE, "phase_shift_deg")
        }
        return ParticleCtf(
            voltage_kv=first.voltage_kv, spherical_aberration_mm=first.spherical_aberration_mm,
            amplitude_contrast=first.amplitude_contrast,
            pixel_size_angstrom=first.pixel_size_angstrom, phase_flipped=first.phase_flipped,
            **joined,
        )  # fmt: skip

    def transfer(
        self,
        kx: torch.Tensor,
        ky: torch.Tensor,
        *,
        index: np.ndarray | None = None,
        rotation_rad: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(m, h, w)`` modelled transfer (``|CTF|`` if phase-flipped) at frequencies ``kx,
        ky`` (1/A) of particles ``index`` (all by default).

        With ``rotation_rad`` ``(m,)``, the transfer of the particle image rotated by that
        angle (counter-clockwise in ``x, y``): ``CTF(R(rotation)^-1 k)``.
        """
        idx = np.arange(self.n) if index is None else np.asarray(index)
        angle = torch.as_tensor(self.defocus_angle_deg[idx])
        if rotation_rad is not None:
            angle = angle + torch.rad2deg(rotation_rad.to(torch.float64))
        ctf = ctf_at(
            kx, ky,
            defocus_u_angstrom=torch.as_tensor(self.defocus_u_angstrom[idx]),
            defocus_v_angstrom=torch.as_tensor(self.defocus_v_angstrom[idx]),
            defocus_angle_deg=angle, voltage_kv=self.voltage_kv,
            spherical_aberration_mm=self.spherical_aberration_mm,
            amplitude_contrast=self.amplitude_contrast,
            phase_shift_deg=torch.as_tensor(self.phase_shift_deg[idx]),
        )  # fmt: skip
        return ctf.abs() if self.phase_flipped else ctf


_PER_PARTICLE = ("defocus_u_angstrom", "defocus_v_angstrom", "defocus_angle_deg")


def fourier_crop(images: torch.Tensor, size_px: int) -> torch.Tensor:
    """Bin ``(..., b, b)`` images to ``(..., s, s)`` by cropping their spectrum (no aliasing);
    pixel values keep their scale, the centre ``b // 2`` maps to ``s // 2``."""
    b = images.shape[-1]
    if size_px > b or size_px % 2 or b % 2:
        raise ValueError(f"fourier_crop: size_px {size_px} must be even and <= the box {b}")
    if size_px == b:
        return images
    spectrum = torch.fft.rfft2(images)
    half = size_px // 2
    rows = torch.cat([spectrum[..., :half, : half + 1], spectrum[..., b - half :, : half + 1]], -2)
    return torch.fft.irfft2(rows, s=(size_px, size_px)) * (size_px / b) ** 2
