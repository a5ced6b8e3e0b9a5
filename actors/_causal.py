"""The exposure worker's side of the causal model: its inputs, and the envelope prior's use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from causalscope.models.causal.inputs import causal_inputs, prior_bfactor
from causalscope.models.records import (
    AcquisitionMetadata,
    CausalInputs,
    CtfRecord,
    MotionRecord,
    RestorationRecord,
)

if TYPE_CHECKING:
    from causalscope.actors._restore import Restoration
    from causalscope.config import CausalSettings
    from causalscope.models.causal.envelope import EnvelopePrior

__all__ = ["bfactor_bounds", "exposure_inputs", "restoration_record"]


def bfactor_bounds(
    settings: CausalSettings,
    prior: EnvelopePrior | None,
    *,
    ctf: CtfRecord,
    motion: MotionRecord | None,
    dose_e_per_a2: float | None,
    metadata: AcquisitionMetadata | None,
) -> tuple[float, float] | None:
    """The range the causal model allows this exposure's envelope B, once it has a prior."""
    if not (settings.enabled and settings.wiener_prior) or prior is None:
        return None
    inputs = causal_inputs(
        ctf=ctf,
        motion=motion,
        dose_e_per_a2=dose_e_per_a2,
        metadata=metadata,
        n_particles=None,
        ssnr_bfactor_angstrom2=None,
        beam_tilt_mrad_per_um=settings.beam_tilt_mrad_per_um,
    )
    return prior_bfactor(
        prior, inputs, min_exposures=settings.prior_min_exposures, z=settings.prior_z
    )


def restoration_record(
    restoration: Restoration | None,
    bounds: tuple[float, float] | None,
    prior: EnvelopePrior | None,
) -> RestorationRecord | None:
    """Which SSNR the Wiener filter used, and the prior's range when there was one."""
    if restoration is None:
        return None
    pulled = restoration.bfactor_used_angstrom2 != restoration.bfactor_fit_angstrom2
    return RestorationRecord(
        ssnr_source="causal_prior" if pulled else "fit",
        bfactor_fit_angstrom2=restoration.bfactor_fit_angstrom2,
        bfactor_used_angstrom2=restoration.bfactor_used_angstrom2,
        prior_bfactor_low_angstrom2=None if bounds is None else bounds[0],
        prior_bfactor_high_angstrom2=None if bounds is None else bounds[1],
        prior_n_exposures=None if prior is None else prior.n_exposures,
    )


def exposure_inputs(
    settings: CausalSettings,
    *,
    ctf: CtfRecord | None,
    motion: MotionRecord | None,
    dose_e_per_a2: float | None,
    metadata: AcquisitionMetadata | None,
    restoration: Restoration | None,
) -> CausalInputs | None:
    """The finished exposure's causal inputs (None when the model is off or cannot read it)."""
    if not settings.enabled:
        return None
    return causal_inputs(
        ctf=ctf,
        motion=motion,
        dose_e_per_a2=dose_e_per_a2,
        metadata=metadata,
        n_particles=restoration.record.n_particles if restoration is not None else None,
        ssnr_bfactor_angstrom2=(
            restoration.bfactor_fit_angstrom2 if restoration is not None else None
        ),
        beam_tilt_mrad_per_um=settings.beam_tilt_mrad_per_um,
    )
