"""The exposure worker alone, stage by stage: what one GPU (or one CPU worker) spends on a movie.

One movie (:func:`~causalscope.daemon.bench.motion.simulate_bench_movie`, ``size``^2 x
``frames``) is processed by an :class:`~causalscope.actors.exposure.ExposureWorker` in this
process, with no Ray, watcher or store around it: once to warm up (first kernels, pinned
buffers, the learned models), then ``n`` times. Reported per stage (the median over the timed
runs) with the whole exposure's time, the movies per hour one worker sustains at that time, the
peak memory, and the run's accuracy against the simulated truth (the global trajectory as
``bench motion`` measures it, the defocus, the picks), so that a faster stage that got worse
shows. Stages the worker runs side by side (the files are written while Delta-Repro runs) each
show their own time; the exposure's time is the wall clock.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_worker_stages_bench"]


def run_worker_stages_bench(
    *,
    size: int,
    frames: int,
    n: int,
    device: str,
    seed: int = 0,
    config: str | Path | None = None,
    preset: str | None = None,
) -> dict[str, Any]:
    """See the module docstring; ``device`` is ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; the
    worker's settings are the defaults, or ``config`` (a settings file) and ``preset`` as the
    CLI's ``--config`` and ``--preset`` give them."""
    from causalscope.actors.exposure import ExposureWorker
    from causalscope.config import load_settings
    from causalscope.daemon.bench._common import movie_metadata
    from causalscope.daemon.bench._machine import machine_load
    from causalscope.daemon.bench._measure import peak_memory, synchronize
    from causalscope.daemon.bench.motion import simulate_bench_movie
    from causalscope.models.optics import DetectorCalibration

    if n < 1:
        raise ValueError(f"--n must be at least 1 timed run, got {n}")
    started = time.perf_counter()
    sim, detector = simulate_bench_movie(size, frames, seed)
    simulate_s = time.perf_counter() - started
    settings = load_settings(config, preset, {"processing": {"device": device}})
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as out, machine_load() as machine:
        worker = ExposureWorker(
            microscope=settings.microscope,
            detector=settings.detector,
            processing=settings.processing,
            output_dir=Path(out),
            calibration=DetectorCalibration(gain=detector.gain_reference.astype(np.float32)),
            device=device,
        )
        metadata = movie_metadata(sim.truth)
        for index in range(n + 1):
            with peak_memory(device) as memory:
                synchronize(device)
                began = time.perf_counter()
                record = worker.process(
                    sim.frames,
                    exposure_id=f"stages_{index:03d}",
                    movie_path=f"stages_{index:03d}.tiff",
                    metadata=metadata,
                )
                synchronize(device)
                wall = time.perf_counter() - began
            runs.append(_run(record, wall, memory, sim))
    timed = runs[1:]
    stages = sorted({stage for run in timed for stage in run["stages_s"]})
    median = {
        s: round(statistics.median(r["stages_s"].get(s, 0.0) for r in timed), 3) for s in stages
    }
    exposure_s = statistics.median(r["exposure_s"] for r in timed)
    # what the movie costs before the rest of the worker: upload (GPU), motion, CTF
    before_rest_s = sum(median.get(s, 0.0) for s in ("upload", "motion", "ctf"))
    return {
        "bench": "pipeline-stages",
        "device": device,
        "movie": f"{size}x{size}x{frames}",
        "settings": {"config": None if config is None else str(config), "preset": preset},
        "simulate_s": round(simulate_s, 1),
        "runs": runs,
        "summary": {
            "stages_s": median,
            "upload_motion_ctf_s": round(before_rest_s, 3),
            # the same without Delta-Repro's own even/odd alignments: the peers' chain
            "upload_motion_ctf_without_halves_s": round(
                before_rest_s - median.get("motion.halves", 0.0), 3
            ),
            "exposure_s": round(exposure_s, 3),
            "movies_per_hour": round(3600.0 / exposure_s),
            "warm_up_s": runs[0]["exposure_s"],
            "peak_rss_increase_gib": max(r["peak_rss_increase_gib"] for r in timed),
            "cuda_peak_gib": timed[-1]["cuda_peak_gib"],
            "global_error_px": timed[-1]["global_error_px"],
            "defocus_error_angstrom": timed[-1]["defocus_error_angstrom"],
            "picks_f1": timed[-1]["picks_f1"],
            "micrographs_mib": timed[-1]["micrographs_mib"],
        },
        "machine": machine,
    }


def _run(record: Any, wall: float, memory: Any, sim: Any) -> dict[str, Any]:
    """One run's times and its accuracy against the simulation's truth."""
    from causalscope.daemon.bench.motion import motion_errors
    from causalscope.models.picking import match_picks

    truth = sim.truth
    error = defocus = f1 = None
    if record.motion is not None:  # as bench motion measures it (with the mean local warp)
        shifts = np.asarray(record.motion.shifts_px)
        error = round(motion_errors(shifts, None, sim)["global_rms_px"], 4)
    if record.ctf is not None:
        mean = 0.5 * (truth["defocus_u_angstrom"] + truth["defocus_v_angstrom"])
        defocus = round(record.ctf.defocus_angstrom - mean, 1)
    if record.picking is not None:
        picks = np.asarray(record.picking.picks_xy_px, dtype=np.float64).reshape(-1, 2)
        radius = 0.25 * record.picking.particle_diameter_angstrom / truth["pixel_size_angstrom"]
        expected = np.asarray(truth["particles"], dtype=np.float64).reshape(-1, 2)
        f1 = round(match_picks(picks, expected, radius_px=radius).f1, 3)
    micrographs = [Path(p) for p in record.outputs.values() if str(p).endswith(".mrc")]
    return {
        "exposure_s": round(wall, 3),
        "status": record.status,
        "micrographs_mib": round(sum(p.stat().st_size for p in micrographs) / 2**20, 1),
        "stages_s": {k: round(v, 3) for k, v in record.timings_s.items()},
        "peak_rss_increase_gib": memory.rss_increase_gib,
        "cuda_peak_gib": memory.cuda_peak_gib,
        "global_error_px": error,
        "defocus_error_angstrom": defocus,
        "picks_f1": f1,
    }
