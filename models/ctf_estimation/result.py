"""The result of a CTF fit: :class:`CtfEstimate`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CtfEstimate"]


@dataclass(frozen=True)
class CtfEstimate:
    """A fitted CTF with its uncertainties and the reasons to doubt it.

    Conventions: ``defocus_u_angstrom >= defocus_v_angstrom`` (positive underfocus, Angstrom);
    ``defocus_angle_deg`` is the angle of U from the x axis in [0, 180) (RELION accepts any
    angle; CTFFIND writes (-90, 90]: compare modulo 180); ``phase_shift_deg`` in [0, 180) (a
    power spectrum cannot tell phi from phi + 180). Sigmas are 1-sigma uncertainties (see
    :func:`models.ctf_estimation.estimate_ctf` for how each is obtained); None where a quantity
    was not measured.

    Attributes
    ----------
    fit_resolution_angstrom
        Highest resolution to which the Thon rings stay supported by the fit (equiphase-averaged
        local correlation above 0.5), or None when not even the lowest band is.
    figure_of_merit
        Correlation between the background-subtracted spectrum and the fitted ring model over
        the fit band, in [-1, 1].
    ice_thickness_nm
        Inverse-variance combination of ``ice_thickness_rings_nm`` (Thon-ring modulation) and
        ``ice_thickness_ice_ring_nm`` (3.7 A ice-ring power).
    at_search_edge
        The mean defocus lies within ``min(2 % of the range, 10 % of the lower end + 200 A)`` of
        either end of the search range.
    supported
        False when the fit should not be used; ``warnings`` says why.
    """

    defocus_u_angstrom: float
    defocus_v_angstrom: float
    defocus_angle_deg: float
    phase_shift_deg: float
    fit_resolution_angstrom: float | None
    figure_of_merit: float
    ice_thickness_nm: float | None
    ice_thickness_rings_nm: float | None
    ice_thickness_ice_ring_nm: float | None
    defocus_sigma_angstrom: float
    astigmatism_sigma_angstrom: float
    angle_sigma_deg: float
    phase_shift_sigma_deg: float | None
    ice_thickness_sigma_nm: float | None
    search_defocus_min_um: float
    search_defocus_max_um: float
    at_search_edge: bool
    supported: bool
    warnings: tuple[str, ...] = ()

    @property
    def defocus_angstrom(self) -> float:
        """Mean defocus ``(dU + dV) / 2``."""
        return 0.5 * (self.defocus_u_angstrom + self.defocus_v_angstrom)

    @property
    def astigmatism_angstrom(self) -> float:
        """``dU - dV`` (>= 0)."""
        return self.defocus_u_angstrom - self.defocus_v_angstrom

    def to_dict(self) -> dict[str, Any]:
        """JSON-able values (non-finite floats become None), with the two properties."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            elif isinstance(value, tuple):
                value = list(value)
            out[key] = value
        out["defocus_angstrom"] = self.defocus_angstrom
        out["astigmatism_angstrom"] = self.astigmatism_angstrom
        return out
