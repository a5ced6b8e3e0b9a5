"""What several benchmarks share: a drift-free simulated micrograph (from
:mod:`models.simulate.still`), a CTF fit of one, and a simulated movie's metadata."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "CS_MM",
    "VOLTAGE_KV",
    "Q",
    "ctf_parameters",
    "estimate_still",
    "fit_ctf",
    "movie_metadata",
    "spearman",
    "still_micrograph",
    "still_parameters",
    "worker_ctf_options",
]

from causalscope.models.simulate.still import still_micrograph, still_parameters

# the simulator's default microscope (300 kV, Cs 2.7 mm, 7 % amplitude contrast)
VOLTAGE_KV, CS_MM, Q = 300.0, 2.7, 0.07


def estimate_still(micrograph: Any, *, estimate_ice: bool = True) -> Any:
    """:func:`models.ctf_estimation.estimate_ctf` on a 1 A/px micrograph of the simulator's
    microscope."""
    from causalscope.models.ctf_estimation import estimate_ctf

    return estimate_ctf(
        micrograph,
        pixel_size_angstrom=1.0,
        voltage_kv=VOLTAGE_KV,
        spherical_aberration_mm=CS_MM,
        amplitude_contrast=Q,
        estimate_ice=estimate_ice,
        **worker_ctf_options(tuple(micrograph.shape[-2:])),
    )


def worker_ctf_options(image_shape: tuple[int, ...]) -> dict[str, Any]:
    """The exposure worker's default CTF settings for a 1 A/px image of ``image_shape``
    (``processing.ctf``), so benchmarks fit as the worker does."""
    from causalscope.config.processing import CtfSettings

    return CtfSettings().fit_options(image_shape, 1.0)


def ctf_parameters(estimate: Any) -> Any:
    """A CTF estimate as the restoration's ``CtfParameters`` (the simulator's microscope)."""
    from causalscope.models.restoration import CtfParameters

    return CtfParameters.from_estimate(
        estimate, voltage_kv=VOLTAGE_KV, spherical_aberration_mm=CS_MM, amplitude_contrast=Q
    )


def fit_ctf(micrograph: Any) -> Any:
    """The micrograph's CTF (:func:`models.ctf_estimation.estimate_ctf`) as ``CtfParameters``."""
    return ctf_parameters(estimate_still(micrograph))


def spearman(order: list[str], truth: list[str]) -> float:
    """Spearman's rank correlation of two orderings of the same names."""
    rank = {name: i for i, name in enumerate(truth)}
    d = np.array([i - rank[name] for i, name in enumerate(order)], dtype=float)
    n = len(order)
    return float(1.0 - 6.0 * float(d @ d) / (n * (n * n - 1)))


def movie_metadata(truth: dict[str, Any]) -> Any:
    """EPU-like metadata of a simulated movie from its truth (``SimulatedExposure.truth``):
    the pixel size, optics, dose and frames it was simulated with, 0.1 s per frame."""
    from causalscope.models.records import AcquisitionMetadata

    return AcquisitionMetadata(
        source_path="sim.xml",
        source_format="epu",
        pixel_size_angstrom=truth["pixel_size_angstrom"],
        voltage_kv=truth["voltage_kv"],
        spherical_aberration_mm=truth["spherical_aberration_mm"],
        dose_e_per_a2=truth["dose_e_per_a2"],
        n_frames=truth["n_frames"],
        exposure_time_s=0.1 * truth["n_frames"],
    )
