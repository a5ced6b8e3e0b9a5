"""Delta-Repro against the simulator's truth on a population of exposures of varied difficulty.

Each exposure is drawn with its own dose, ice thickness, defocus, astigmatism and drift, spread
over what a session meets (log-uniform where the effect is multiplicative), processed by an
exposure worker (no Ray) with its Delta-Repro refits, and compared with its truth:

- ``estimate_error``: the two errors below that Delta-Repro refits, each on the scale its z
  uses (:mod:`models.scoring.repro`: the CTF error over the defocus error and the trajectory's
  over the shift that each cost 45 degrees of phase at 3 A), combined as their RMS: the
  exposure's estimation error in the score's own units;
- ``ctf_error_angstrom``: the whole exposure's defocus error in the direction where it is
  largest, ``defocus + astigmatism / 2`` of the two below (the error the CTF correction makes
  there; the same measure Delta-Repro takes of its halves' difference);
- ``defocus_error_angstrom``: ``|(dU + dV)/2 - truth|`` of the whole exposure's CTF fit;
- ``astigmatism_error_angstrom``: the length of the difference of the astigmatism vectors
  ``(dU - dV) (cos 2a, sin 2a)`` (no convention of which axis is U matters);
- ``pick_count_error``: ``|picked - true| / true`` (mostly the picker's recall, which no
  refit can see: reported, not ranked against);
- ``drift_error_px``: RMS over frames of the global trajectory against the true one.

The report gives, per seed and pooled, the Spearman rank correlation of ``1 - DeltaRepro`` with
each error (the primary: ``estimate_error``), over the exposures that have a
DeltaRepro (the whole exposure's CTF fit supported; the rest fail the gate and are counted),
and the cost of the refits per exposure.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ERRORS",
    "bench_worker",
    "draw_varied",
    "process_simulated",
    "repro_population",
    "spearman_by_error",
    "true_errors",
]

#: the true errors ranked against, the first is the primary
ERRORS = (
    "estimate_error",
    "ctf_error_angstrom",
    "defocus_error_angstrom",
    "astigmatism_error_angstrom",
    "drift_error_px",
    "pick_count_error",
)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def draw_varied(rng: np.random.Generator, size: int, frames: int, apix: float) -> Any:
    """One exposure's parameters, each cause of difficulty drawn over a session's range, the
    bad exposures' included (``bench scores``' causes: 6 e/A^2 is too little dose, 140 nm of
    ice is thick): dose 4-60 e/A^2 and drift 2-40 A log-uniform, ice 20-150 nm, defocus
    0.8-2.4 um, astigmatism 100-1500 A log-uniform."""
    from causalscope.models.simulate.exposure import ExposureParameters

    defocus = float(rng.uniform(8_000, 24_000))
    astig = _log_uniform(rng, 100, 1500)
    return ExposureParameters(
        size_px=size,
        n_frames=frames,
        pixel_size_angstrom=apix,
        dose_e_per_a2=_log_uniform(rng, 4, 60),
        defocus_u_angstrom=defocus + astig / 2,
        defocus_v_angstrom=defocus - astig / 2,
        defocus_angle_deg=float(rng.uniform(0, 180)),
        ice_thickness_nm=float(rng.uniform(20, 150)),
        drift_total_px=_log_uniform(rng, 2, 40) / apix,
        drift_direction_deg=float(rng.uniform(0, 360)),
        local_motion_px=float(rng.uniform(0.3, 2.0)),
        n_particles=int(rng.integers(25, 50)),
        seed=int(rng.integers(1 << 30)),
    )


def true_errors(
    record: Any, truth: dict[str, Any], *, pixel_size_angstrom: float, voltage_kv: float
) -> dict[str, float | None]:
    """The record's estimation errors against the simulator's ``truth`` (see the module)."""
    from causalscope.models.scoring.repro import (
        defocus_scale_angstrom,
        shift_scale_angstrom,
        worst_direction_difference,
    )
    from causalscope.models.units import electron_wavelength_angstrom

    out: dict[str, float | None] = dict.fromkeys(ERRORS)
    ctf = record.ctf
    if ctf is not None:
        found = (ctf.defocus_u_angstrom, ctf.defocus_v_angstrom, ctf.defocus_angle_deg)
        true = tuple(truth[k] for k in ("defocus_u_angstrom", "defocus_v_angstrom"))
        true += (truth["defocus_angle_deg"],)
        mean_error = abs(0.5 * (found[0] + found[1]) - 0.5 * (true[0] + true[1]))
        worst = worst_direction_difference(found, true)
        out["defocus_error_angstrom"] = mean_error
        out["astigmatism_error_angstrom"] = 2.0 * (worst - mean_error)
        out["ctf_error_angstrom"] = worst
    if record.motion is not None:
        found_shifts = np.asarray(record.motion.shifts_px, dtype=np.float64)
        true_shifts = np.asarray(truth["shifts_px"], dtype=np.float64)
        if found_shifts.shape == true_shifts.shape:
            out["drift_error_px"] = float(
                np.sqrt(np.mean(np.sum((found_shifts - true_shifts) ** 2, axis=1)))
            )
    n_true = len(truth.get("particles", []))
    if record.picking is not None and n_true:
        out["pick_count_error"] = abs(record.picking.n_particles - n_true) / n_true
    ctf_error, drift_error = out["ctf_error_angstrom"], out["drift_error_px"]
    if ctf_error is not None and drift_error is not None:
        from causalscope.config import load_settings

        # the scales the worker's Delta-Repro uses (its default settings)
        resolution = load_settings(None, None, {}).processing.scoring.repro_resolution_angstrom
        wavelength = electron_wavelength_angstrom(voltage_kv)
        defocus_z = ctf_error / defocus_scale_angstrom(
            resolution_angstrom=resolution, wavelength_angstrom=wavelength
        )
        shift_z = (drift_error * pixel_size_angstrom) / shift_scale_angstrom(
            resolution_angstrom=resolution
        )
        out["estimate_error"] = math.sqrt(0.5 * (defocus_z**2 + shift_z**2))
    return out


def bench_worker(folder: Path, detector: Any) -> Any:
    """An exposure worker (no Ray, CPU, default settings) for ``detector``'s simulated movies,
    writing under ``folder``."""
    from causalscope.actors.exposure import ExposureWorker
    from causalscope.config import load_settings
    from causalscope.models.optics import DetectorCalibration

    settings = load_settings(None, None, {"processing": {"device": "cpu"}})
    return ExposureWorker(
        microscope=settings.microscope,
        detector=settings.detector,
        processing=settings.processing,
        output_dir=folder,
        calibration=DetectorCalibration(gain=detector.gain_reference.astype(np.float32)),
        device="cpu",
    )


def process_simulated(
    worker: Any, params: Any, *, specimen: Any, detector: Any, exposure_id: str
) -> tuple[Any, Any]:
    """Simulate one movie of ``params`` and process it as the session would (EPU-like
    metadata, 0.1 s per frame); ``(record, simulation)``."""
    from causalscope.daemon.bench._common import movie_metadata
    from causalscope.models.simulate.exposure import simulate_exposure

    sim = simulate_exposure(params, specimen=specimen, detector=detector)
    metadata = movie_metadata(sim.truth)
    record = worker.process(
        sim.frames, exposure_id=exposure_id, movie_path=f"{exposure_id}.tiff", metadata=metadata
    )
    return record, sim


def repro_population(
    seed: int, n: int, size: int, frames: int, folder: Path, apix: float = 1.0
) -> list[dict[str, Any]]:
    """``n`` exposures of varied difficulty, processed: per exposure its parameters' causes of
    difficulty, its true errors, its DeltaRepro (``None`` without one) and the refits' cost."""
    import torch

    from causalscope.models.simulate.detector import draw_detector
    from causalscope.models.simulate.specimen import phantom_specimen

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    detector = draw_detector(rng, (size, size))
    worker = bench_worker(folder / f"repro{seed}", detector)
    specimen = phantom_specimen()
    rows: list[dict[str, Any]] = []
    for k in range(n):
        params = draw_varied(rng, size, frames, apix)
        exposure_id = f"r{seed}_{k:03d}"
        record, sim = process_simulated(
            worker, params, specimen=specimen, detector=detector, exposure_id=exposure_id
        )
        repro = record.repro
        rows.append(
            {
                "exposure_id": exposure_id,
                "seed": seed,
                "dose_e_per_a2": round(params.dose_e_per_a2, 2),
                "ice_thickness_nm": round(params.ice_thickness_nm, 1),
                "defocus_angstrom": round(
                    0.5 * (params.defocus_u_angstrom + params.defocus_v_angstrom), 1
                ),
                "astigmatism_angstrom": round(
                    params.defocus_u_angstrom - params.defocus_v_angstrom, 1
                ),
                "drift_angstrom": round(params.drift_total_px * apix, 2),
                "status": record.status,
                "ctf_supported": record.ctf is not None and record.ctf.supported,
                "defocus_sigma_angstrom": None
                if record.ctf is None
                else record.ctf.defocus_sigma_angstrom,
                **true_errors(
                    record, sim.truth, pixel_size_angstrom=apix, voltage_kv=params.voltage_kv
                ),
                "delta_repro": None if repro is None else repro.delta_repro,
                "repro": None if repro is None else repro.model_dump(),
                "repro_s": record.timings_s.get("repro"),
            }
        )
    return rows


def spearman_by_error(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Spearman of ``1 - DeltaRepro`` with each true error over ``rows`` that have both."""
    from scipy.stats import spearmanr

    out: dict[str, float | None] = {}
    for name in ERRORS:
        pairs = [
            (1.0 - r["delta_repro"], r[name])
            for r in rows
            if r["delta_repro"] is not None and r[name] is not None
        ]
        if len(pairs) < 4 or len({p[0] for p in pairs}) < 2:
            out[name] = None
            continue
        rho = spearmanr([p[0] for p in pairs], [p[1] for p in pairs]).statistic
        out[name] = None if math.isnan(rho) else round(float(rho), 3)
    return out


def run_repro_population(
    *, seeds: tuple[int, ...], n: int, size: int, frames: int, folder: Path, apix: float = 1.0
) -> dict[str, Any]:
    """The population's report: Spearman per seed and pooled, and the refits' cost."""
    by_seed: dict[str, Any] = {}
    everything: list[dict[str, Any]] = []
    for seed in seeds:
        rows = repro_population(seed, n, size, frames, folder, apix)
        everything += rows
        by_seed[str(seed)] = {
            "exposures": len(rows),
            "with_delta_repro": sum(r["delta_repro"] is not None for r in rows),
            "spearman": spearman_by_error(rows),
        }
    cost = [1000 * r["repro_s"] for r in everything if r["repro_s"] is not None]
    primary = [s["spearman"][ERRORS[0]] for s in by_seed.values()]
    return {
        "population": {"exposures_per_seed": n, "size_px": size, "frames": frames, "seeds": seeds},
        "spearman_primary": ERRORS[0],
        "spearman_by_seed": by_seed,
        "spearman_primary_by_seed": primary,
        "spearman_pooled": spearman_by_error(everything),
        "repro_refits_ms_per_exposure_median": statistics.median(cost) if cost else None,
        "repro_refits_ms_per_exposure_max": max(cost) if cost else None,
        "rows": everything,
    }
