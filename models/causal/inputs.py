"""From one exposure's records to what the causal model reads, and the envelope prior's use."""

from __future__ import annotations

import math

from causalscope.models.causal._measurements import measurements
from causalscope.models.causal.envelope import EnvelopePrior
from causalscope.models.records import AcquisitionMetadata, CausalInputs, CtfRecord, MotionRecord

__all__ = ["causal_inputs", "image_shift_um", "measurements", "prior_bfactor"]


def image_shift_um(metadata: AcquisitionMetadata | None) -> float | None:
    """``|image shift|`` from EPU or SerialEM metadata (image shift, else beam shift)."""
    if metadata is None:
        return None
    shift = metadata.image_shift if metadata.image_shift is not None else metadata.beam_shift
    if shift is None:
        return None
    value = math.hypot(float(shift[0]), float(shift[1]))
    return value if math.isfinite(value) else None


def causal_inputs(
    *,
    ctf: CtfRecord | None,
    motion: MotionRecord | None,
    dose_e_per_a2: float | None,
    metadata: AcquisitionMetadata | None,
    n_particles: int | None,
    ssnr_bfactor_angstrom2: float | None,
    beam_tilt_mrad_per_um: float,
) -> CausalInputs | None:
    """The exposure's factors and outcome, or None when one the model needs is missing.

    Needed: a supported CTF fit with a fit resolution and an ice thickness, a motion record,
    and a positive dose.
    """
    if ctf is None or motion is None or not ctf.supported:
        return None
    if ctf.fit_resolution_angstrom is None or ctf.ice_thickness_nm is None:
        return None
    if dose_e_per_a2 is None or not dose_e_per_a2 > 0:
        return None
    shift = image_shift_um(metadata)
    return CausalInputs(
        ice_thickness_nm=ctf.ice_thickness_nm,
        dose_e_per_a2=dose_e_per_a2,
        total_drift_px=motion.total_drift_px,
        defocus_um=ctf.defocus_angstrom / 1e4,
        astigmatism_angstrom=abs(ctf.astigmatism_angstrom),
        image_shift_um=shift,
        beam_tilt_mrad=0.0 if shift is None else beam_tilt_mrad_per_um * shift,
        n_particles=n_particles or 0,
        fit_resolution_angstrom=ctf.fit_resolution_angstrom,
        ssnr_bfactor_angstrom2=ssnr_bfactor_angstrom2,
    )


def prior_bfactor(
    prior: EnvelopePrior | None,
    inputs: CausalInputs | None,
    *,
    min_exposures: int,
    z: float,
) -> tuple[float, float] | None:
    """The range ``(low, high)`` the exposure's own envelope B should lie in, or None (no prior).

    Once the model has learned from ``min_exposures`` fits, the range is the model's B for the
    exposure's factors ``-+ z`` predictive sd. The Wiener filter raises an own fit below
    ``low`` to ``low``: such a fit claims far more high-resolution signal than the session's
    exposures with these factors have, and a Wiener filter that trusts noise amplifies it. A
    fit above ``high`` is kept: too high a B only smooths a little more, while pulling it
    down on faint exposures makes the filter worse (``causalscope bench causal``; README).
    The real variation between exposures within the range (their particles, their specimen)
    is kept.
    """
    if prior is None or inputs is None or prior.n_exposures < min_exposures:
        return None
    low, high = prior.bounds(inputs, z=z)
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return low, high
