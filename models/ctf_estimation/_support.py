"""Private: whether the spectrum supports a refined CTF fit, and the warnings that say why not."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from causalscope.models.ctf_estimation._fit import Refinement
from causalscope.models.ctf_estimation._model import Band, Optics
from causalscope.models.ctf_estimation._quality import (
    alias_frequency,
    competing_defocus,
    fit_resolution,
    ring_periods,
)

__all__ = [
    "MAX_COMPETITOR_RATIO",
    "MIN_FIGURE_OF_MERIT",
    "MIN_FIT_Z",
    "MIN_RING_PERIODS",
    "Support",
    "judge_support",
]

#: figure of merit below which a fit is not supported, and the z-score floor for small bands
MIN_FIGURE_OF_MERIT = 0.05
MIN_FIT_Z = 10.0
#: a supported fit needs this many Thon-ring periods between the refinement's first frequency
#: and the fit resolution, and no defocus further than ``max(2 %, a quarter ring at the fit
#: resolution)`` away whose score (equiphase-averaged, RMS-normalised profile of that band)
#: reaches this fraction of the fit's
MIN_RING_PERIODS = 3.0
MAX_COMPETITOR_RATIO = 0.7


@dataclass(frozen=True)
class Support:
    """The verdict on one fit."""

    k_fit: float | None  # fit resolution, 1/A; None where the rings support none
    k_used: float  # ``k_fit`` clipped to the fit band
    supported: bool
    at_edge: bool  # the mean defocus lies at the edge of the search range
    warnings: list[str]


def judge_support(
    full: Band,
    fit: Refinement,
    y_full: torch.Tensor,
    optics: Optics,
    *,
    k_min: float,
    k_max: float,
    k_ref: float,
    defocus_range_angstrom: tuple[float, float],
    normalise_half_width: int,
) -> Support:
    """Fit resolution, support and search-range edge of ``fit``.

    ``full``: the whole half plane and ``y_full`` its values over the background minus 1;
    ``k_min``, ``k_max``: the fit band; ``k_ref``: where the refinement started. Not supported:
    a figure of merit below :data:`MIN_FIGURE_OF_MERIT` (or z below :data:`MIN_FIT_Z`), rings
    unsupported beyond ``1.5 k_min``, a defocus the rings do not pin (:func:`_unique_defocus`),
    or rings that alias over more than half the fit band.
    """
    params = fit.params
    warnings: list[str] = []
    k_fit, _ = fit_resolution(full, y_full, params, optics, k_start=k_min)
    supported = True
    z = fit.cc * math.sqrt(fit.n_pixels)
    if fit.cc < MIN_FIGURE_OF_MERIT or z < MIN_FIT_Z:
        supported = False
        warnings.append(
            f"figure of merit {fit.cc:.3f} is too low (needs >= {MIN_FIGURE_OF_MERIT}, "
            f"z >= {MIN_FIT_Z:.0f}; z = {z:.1f})"
        )
    if k_fit is None or k_fit < 1.5 * k_min:
        supported = False
        warnings.append("the Thon rings are not supported beyond the low-resolution limit")
    k_used = min(k_fit if k_fit is not None else k_min, k_max)
    unique = _unique_defocus(
        full,
        params,
        y_full,
        optics,
        k_ref=k_ref,
        k_used=k_used,
        defocus_range_angstrom=defocus_range_angstrom,
        normalise_half_width=normalise_half_width,
        warnings=warnings,
    )
    sampled = _sampled(full, params, optics, k_used=k_used, k_max=k_max, warnings=warnings)
    supported = supported and unique and sampled
    d_lo, d_hi = defocus_range_angstrom
    margin = min(0.02 * (d_hi - d_lo), 0.1 * d_lo + 200.0)
    at_edge = bool(float(params[0]) < d_lo + margin or float(params[0]) > d_hi - margin)
    if at_edge:
        warnings.append(
            f"mean defocus {float(params[0]):.0f} A is at the edge of the search range "
            f"[{d_lo:.0f}, {d_hi:.0f}] A"
        )
    return Support(k_fit, k_used, supported, at_edge, warnings)


def _unique_defocus(
    full: Band,
    params: torch.Tensor,
    y_full: torch.Tensor,
    optics: Optics,
    *,
    k_ref: float,
    k_used: float,
    defocus_range_angstrom: tuple[float, float],
    normalise_half_width: int,
    warnings: list[str],
) -> bool:
    """Whether the rings from ``k_ref`` to ``k_used`` pin the defocus: at least
    :data:`MIN_RING_PERIODS` ring periods, and no other defocus scoring above
    :data:`MAX_COMPETITOR_RATIO` of the fit; appends a warning for each failure."""
    d_fit = float(params[0])
    periods = ring_periods(d_fit, optics, k_ref, k_used)
    separation = max(0.02 * d_fit, 0.5 / (optics.wavelength_angstrom * k_used * k_used))
    d_lo, d_hi = defocus_range_angstrom
    comp = competing_defocus(
        full,
        y_full,
        params,
        optics,
        k_lo=k_ref,
        k_hi=k_used,
        defocus_min_angstrom=d_lo,
        defocus_max_angstrom=d_hi,
        separation_angstrom=separation,
        normalise_half_width=normalise_half_width,
    )
    unique = True
    if periods < MIN_RING_PERIODS:
        unique = False
        warnings.append(
            f"the refined band from {1 / k_ref:.1f} A to the fit resolution "
            f"{1 / k_used:.1f} A spans {max(periods, 0.0):.1f} Thon-ring periods at "
            f"{d_fit:.0f} A (needs >= {MIN_RING_PERIODS:g}): too few to determine the defocus"
        )
    if comp is not None and comp[2] > MAX_COMPETITOR_RATIO * comp[0]:
        unique = False
        warnings.append(
            f"ambiguous defocus: {comp[1]:.0f} A scores {comp[2]:.2f} against {comp[0]:.2f} "
            f"at the fitted {d_fit:.0f} A (needs < {MAX_COMPETITOR_RATIO:g} of it) on the "
            f"rings from {1 / k_ref:.1f} to {1 / k_used:.1f} A"
        )
    return unique


def _sampled(
    full: Band,
    params: torch.Tensor,
    optics: Optics,
    *,
    k_used: float,
    k_max: float,
    warnings: list[str],
) -> bool:
    """False when the Thon rings alias (period < 2 spectrum px) over more than half the fit
    band; appends a warning whenever they alias within the fit resolution."""
    n, apix = full.n, full.pixel_size_angstrom
    k_alias = alias_frequency(params, optics, n=n, pixel_size_angstrom=apix)
    if k_alias is None or not k_alias <= k_used:
        return True
    msg = (
        f"Thon rings alias (period < 2 spectrum px) beyond {1 / k_alias:.1f} A "
        f"at box {n} and {apix:g} A/px"
    )
    sampled = True
    if k_alias < 0.5 * k_max:
        sampled = False
        msg += ": over more than half the fit band, this defocus cannot be sampled at this box"
    warnings.append(msg)
    return sampled
