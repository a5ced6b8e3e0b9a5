"""Private: one exposure's causal inputs as the keys of the design matrix."""

from __future__ import annotations

from causalscope.models.records import CausalInputs

__all__ = ["measurements"]


def measurements(inputs: CausalInputs) -> dict[str, float]:
    """The keys of :func:`models.causal.graph.design_matrix` from one exposure's inputs."""
    return {
        "ice_thickness_nm": inputs.ice_thickness_nm,
        "dose_e_per_a2": inputs.dose_e_per_a2,
        "total_drift_px": inputs.total_drift_px,
        "defocus_um": inputs.defocus_um,
        "astigmatism_angstrom": inputs.astigmatism_angstrom,
        "beam_tilt_mrad": inputs.beam_tilt_mrad,
        "n_particles": float(inputs.n_particles),
    }
