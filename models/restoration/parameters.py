"""One bundle of CTF parameters to pass around: :class:`CtfParameters`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

__all__ = ["CtfKwargs", "CtfParameters"]


class CtfKwargs(TypedDict):
    """The CTF keyword arguments shared by :mod:`models.ctf` and :mod:`models.restoration`."""

    defocus_u_angstrom: float
    defocus_v_angstrom: float
    defocus_angle_deg: float
    voltage_kv: float
    spherical_aberration_mm: float
    amplitude_contrast: float
    phase_shift_deg: float


@dataclass(frozen=True)
class CtfParameters:
    """The CTF of one micrograph (RELION's convention, :mod:`models.ctf`).

    ``CtfParameters(...).kwargs()`` gives the keyword arguments of :func:`phase_flip`,
    :func:`wiener_filter` and :func:`spectral_snr_from_fit` (all but the pixel size).
    """

    defocus_u_angstrom: float
    defocus_v_angstrom: float
    defocus_angle_deg: float
    voltage_kv: float
    spherical_aberration_mm: float
    amplitude_contrast: float
    phase_shift_deg: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.amplitude_contrast < 1:
            raise ValueError(f"amplitude_contrast must be in [0, 1), got {self.amplitude_contrast}")
        if self.voltage_kv <= 0:
            raise ValueError(f"voltage_kv must be positive, got {self.voltage_kv}")

    def kwargs(self) -> CtfKwargs:
        """The fields as keyword arguments."""
        return CtfKwargs(
            defocus_u_angstrom=self.defocus_u_angstrom,
            defocus_v_angstrom=self.defocus_v_angstrom,
            defocus_angle_deg=self.defocus_angle_deg,
            voltage_kv=self.voltage_kv,
            spherical_aberration_mm=self.spherical_aberration_mm,
            amplitude_contrast=self.amplitude_contrast,
            phase_shift_deg=self.phase_shift_deg,
        )

    @classmethod
    def from_estimate(
        cls,
        estimate: Any,
        *,
        voltage_kv: float,
        spherical_aberration_mm: float,
        amplitude_contrast: float,
    ) -> CtfParameters:
        """From a :class:`models.ctf_estimation.CtfEstimate` and the optics it was fitted with."""
        return cls(
            defocus_u_angstrom=float(estimate.defocus_u_angstrom),
            defocus_v_angstrom=float(estimate.defocus_v_angstrom),
            defocus_angle_deg=float(estimate.defocus_angle_deg),
            voltage_kv=voltage_kv,
            spherical_aberration_mm=spherical_aberration_mm,
            amplitude_contrast=amplitude_contrast,
            phase_shift_deg=float(estimate.phase_shift_deg),
        )
