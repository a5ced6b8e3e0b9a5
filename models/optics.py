"""Physical value objects of an exposure: the optics it was taken with and the detector's
calibration (frozen dataclasses that check their values when made; numpy, no torch).

Names carry their units (:mod:`models.units`); the spherical aberration is
``spherical_aberration_mm`` here, in :class:`models.records.ExposureRecord`, the settings and the
session database.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import numpy as np

if TYPE_CHECKING:
    from causalscope.models.records import AcquisitionMetadata

__all__ = ["CtfKeywords", "DetectorCalibration", "Optics"]


class CtfKeywords(TypedDict):
    """Voltage, Cs and amplitude contrast spelt as the CTF functions' keyword arguments."""

    voltage_kv: float
    spherical_aberration_mm: float
    amplitude_contrast: float


def _check(name: str, value: float, *, low: float, high: float = math.inf, strict: bool) -> None:
    number = float(value)
    below = number <= low if strict else number < low
    if not math.isfinite(number) or below or number >= high:
        bound = f"> {low:g}" if strict else f">= {low:g}"
        upper = "" if math.isinf(high) else f" and < {high:g}"
        raise ValueError(f"{name} must be finite, {bound}{upper}; got {value!r}")


@dataclass(frozen=True)
class Optics:
    """The optics of one exposure.

    Attributes
    ----------
    pixel_size_angstrom
        Pixel size of the frames as the worker sees them (EER upsampling included).
    voltage_kv
        Acceleration voltage.
    spherical_aberration_mm
        Spherical aberration.
    amplitude_contrast
        Fraction of amplitude contrast, in [0, 1).

    Raises
    ------
    ValueError
        A value out of its physical range; the message names the field and the value.
    """

    pixel_size_angstrom: float
    voltage_kv: float
    spherical_aberration_mm: float
    amplitude_contrast: float

    def __post_init__(self) -> None:
        _check("pixel_size_angstrom", self.pixel_size_angstrom, low=0.0, strict=True)
        _check("voltage_kv", self.voltage_kv, low=0.0, strict=True)
        _check("spherical_aberration_mm", self.spherical_aberration_mm, low=0.0, strict=False)
        _check("amplitude_contrast", self.amplitude_contrast, low=0.0, high=1.0, strict=False)

    @classmethod
    def resolve(
        cls,
        configured: Optics,
        *,
        metadata: AcquisitionMetadata | None = None,
        pixel_size_angstrom: float | None = None,
    ) -> Optics:
        """The exposure's optics: ``pixel_size_angstrom`` (the frames' own) when given, else
        the metadata's values, else the ``configured`` microscope's; a value of 0 counts as
        missing. The amplitude contrast always comes from ``configured``."""
        md = metadata
        return cls(
            pixel_size_angstrom=pixel_size_angstrom
            or (md.pixel_size_angstrom if md is not None else None)
            or configured.pixel_size_angstrom,
            voltage_kv=(md.voltage_kv if md is not None else None) or configured.voltage_kv,
            spherical_aberration_mm=(md.spherical_aberration_mm if md is not None else None)
            or configured.spherical_aberration_mm,
            amplitude_contrast=configured.amplitude_contrast,
        )

    def ctf_keywords(self) -> CtfKeywords:
        """Voltage, Cs and amplitude contrast as the keyword arguments of the CTF functions
        (:func:`models.ctf.ctf_2d`, :class:`models.restoration.CtfParameters`, ...)."""
        return CtfKeywords(
            voltage_kv=self.voltage_kv,
            spherical_aberration_mm=self.spherical_aberration_mm,
            amplitude_contrast=self.amplitude_contrast,
        )


@dataclass(frozen=True)
class DetectorCalibration:
    """Gain reference and defect mask, already in the frames' orientation and size.

    Attributes
    ----------
    gain
        ``(h, w)`` multiplicative gain reference, or None (frames already gain-corrected).
    defect_mask
        ``(h, w)`` bool, True at pixels to replace, or None.

    Raises
    ------
    ValueError
        An array that is not a 2-D image, or a gain and defect mask of different sizes.
    """

    gain: np.ndarray | None = None
    defect_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name, array in (("gain", self.gain), ("defect_mask", self.defect_mask)):
            if array is not None and np.ndim(array) != 2:
                raise ValueError(f"{name} must be a 2-D (h, w) image; got shape {np.shape(array)}")
        if (
            self.gain is not None
            and self.defect_mask is not None
            and np.shape(self.gain) != np.shape(self.defect_mask)
        ):
            raise ValueError(
                f"gain is {np.shape(self.gain)} but defect_mask is {np.shape(self.defect_mask)}"
            )

    def mismatch(self, frame_shape: tuple[int, ...]) -> str | None:
        """Why this calibration cannot correct ``(h, w)`` frames, or None when it can."""
        for name, array in (("gain reference", self.gain), ("defect mask", self.defect_mask)):
            if array is not None and tuple(array.shape) != tuple(frame_shape):
                return (
                    f"frames are {frame_shape[1]}x{frame_shape[0]} px but the {name} is "
                    f"{array.shape[1]}x{array.shape[0]}"
                )
        return None
