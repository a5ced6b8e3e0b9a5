"""Motion-correction benchmark: trajectory accuracy against simulated truth, time, memory.

Cases: 1024 x 1024 x 20 and 4096 x 4096 x 40 movies at 300 kV, 1 A/px, 40 e/A^2, with a
drawn detector (gain, defects, hot pixels), drift and a local warp. Global error: RMS over
frames of |estimated - true| where the true global trajectory is the shift plus the mean of
the local warp over the image's pixels (the rigid part of the motion). Local error: RMS over a
9 x 9 grid of positions and all frames of the total displacement (global + local).

Both errors are taken after removing the one constant [x, y] offset (the mean difference)
that minimises them: a translation of the whole corrected movie changes no image, and both
trajectories are otherwise anchored at frame 0, whose own measurement noise would shift every
frame's error alike. The mean of the local warp is taken at pixel centres (a 64 x 64 grid of
cells, each sampled at its centre); it used to be sampled at the cells' corners, off centre by
half a cell, which put up to 0.04 px of the warp's tilt into the truth at 1024 px.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from causalscope.daemon.bench._measure import peak_memory

__all__ = ["CASES", "motion_errors", "run_motion_bench", "simulate_bench_movie"]

CASES: dict[str, dict[str, Any]] = {
    "1024x1024x20": {"size_px": 1024, "n_frames": 20},
    "4096x4096x40": {"size_px": 4096, "n_frames": 40},
}
#: ``--compare`` times each side this many times and keeps the fastest
COMPARE_REPEATS = 3


def motion_errors(
    shifts_px: np.ndarray, local_model: Any, sim: Any, *, grid: int = 9
) -> dict[str, float]:
    """Global and local RMS errors (px) of an estimate against the simulated movie ``sim``'s
    truth (``global_rms_px``: the trajectory against the true shift plus the pixel mean of the
    true local warp; ``local_rms_px``: the total displacement on a ``grid`` x ``grid`` grid;
    both after removing a constant offset)."""
    from causalscope.models.simulate.motion import local_displacement_px

    truth_shifts_px = sim.motion.shifts_px
    truth_coefficients_px = sim.motion.local_coefficients_px
    truth_profile = sim.motion.local_profile
    size_px = int(sim.frames.shape[-1])

    n_frames = len(truth_shifts_px)
    frames = np.arange(n_frames)
    step = max(1, size_px // 64)
    centres = np.arange(0, size_px, step, dtype=np.float64) + (step - 1) / 2.0
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    mean_local = local_displacement_px(
        truth_coefficients_px,
        truth_profile,
        x_px=xs[..., None],
        y_px=ys[..., None],
        size_px=size_px,
        frame=frames,
    ).mean(axis=(0, 1))
    rigid = truth_shifts_px + mean_local
    global_diff = shifts_px - rigid
    global_diff = global_diff - global_diff.mean(axis=0)
    global_rms = float(np.sqrt(np.mean(np.sum(global_diff**2, axis=1))))
    out = {"global_rms_px": global_rms}
    points = (np.arange(grid) + 0.5) * size_px / grid
    gx, gy = np.meshgrid(points, points)
    gx, gy = gx.reshape(-1, 1), gy.reshape(-1, 1)
    true_d = local_displacement_px(
        truth_coefficients_px, truth_profile, x_px=gx, y_px=gy, size_px=size_px, frame=frames
    )
    true_total = truth_shifts_px[None] + true_d
    estimated = shifts_px[None] + (
        np.asarray(local_model.displacement_px(gx, gy, frames[None, :]))
        if local_model is not None
        else 0.0
    )
    local_diff = estimated - true_total
    local_diff = local_diff - local_diff.reshape(-1, 2).mean(axis=0)
    out["local_rms_px"] = float(np.sqrt(np.mean(np.sum(local_diff**2, axis=-1))))
    out["true_local_rms_px"] = float(np.sqrt(np.mean(np.sum(true_d**2, axis=-1))))
    return out


def simulate_bench_movie(size_px: int, n_frames: int, seed: int) -> Any:
    """The bench's movie: 40 e/A^2, 1.5 um defocus, 40 nm ice, 5-15 px drift, 1.5 px local
    warp, a drawn detector; returns the simulation and the detector."""
    from causalscope.models.simulate.detector import draw_detector
    from causalscope.models.simulate.exposure import ExposureParameters, simulate_exposure
    from causalscope.models.simulate.specimen import phantom_specimen

    rng = np.random.default_rng(seed)
    params = ExposureParameters(
        size_px=size_px,
        n_frames=n_frames,
        pixel_size_angstrom=1.0,
        dose_e_per_a2=40.0,
        defocus_u_angstrom=15_200.0,
        defocus_v_angstrom=14_800.0,
        ice_thickness_nm=40.0,
        drift_total_px=float(rng.uniform(5, 15)),
        drift_direction_deg=float(rng.uniform(0, 360)),
        local_motion_px=1.5,
        n_particles=int(40 * (size_px / 1024) ** 2),
        seed=seed,
    )
    detector = draw_detector(rng, (size_px, size_px))
    return simulate_exposure(params, specimen=phantom_specimen(), detector=detector), detector


def _spin(stop: Any) -> None:
    """A competing CPU job: one core kept busy until ``stop`` is set."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def run_motion_bench(
    *, cases: list[str], seeds: list[int], device: str, compare: bool, compete: bool = False
) -> dict[str, Any]:
    """Run the motion benchmark; returns a JSON-able report."""
    import torch

    from causalscope.actors._memory import keep_freed_memory, release_freed_memory
    from causalscope.config import load_settings
    from causalscope.models.motion import correct_motion

    processing = load_settings(None, None, {}).processing
    motion = processing.motion  # what a worker runs by default, Delta-Repro's halves included

    # as an exposure worker does: freed temporaries stay in the heap, given back after a movie
    report: dict[str, Any] = {
        "bench": "motion",
        "device": device,
        "heap_kept": keep_freed_memory(),
        "cases": [],
    }
    for name in cases:
        spec = CASES[name]
        for seed in seeds:
            started = time.perf_counter()
            sim, detector = simulate_bench_movie(spec["size_px"], spec["n_frames"], seed)
            simulate_s = time.perf_counter() - started
            gain = torch.as_tensor(detector.gain_reference, dtype=torch.float32, device=device)
            options = {
                "pixel_size_angstrom": 1.0,
                "voltage_kv": 300.0,
                "dose_per_frame_e_per_a2": 40.0 / spec["n_frames"],
                "gain": gain,
                "patches": (motion.patches_y, motion.patches_x),
                "bfactor_angstrom2": motion.bfactor_angstrom2,
                "iterations": motion.iterations,
                "tolerance_px": motion.tolerance_px,
                "patch_iterations": motion.patch_iterations,
                "device": device,
                "halves": processing.scoring.refits_halves,
            }
            with peak_memory(device) as memory:
                started = time.perf_counter()
                result = correct_motion(sim.frames, **options)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                total_s = time.perf_counter() - started
            errors = motion_errors(np.asarray(result.shifts_px), result.local_model, sim)
            case: dict[str, Any] = {
                "case": name,
                "seed": seed,
                **{k: round(v, 4) for k, v in errors.items()},
                "time_s": round(total_s, 3),
                "stages_s": {k: round(v, 3) for k, v in result.timings_s.items()},
                "peak_rss_increase_gib": memory.rss_increase_gib,
                "cuda_peak_gib": memory.cuda_peak_gib,
                "simulate_s": round(simulate_s, 2),
            }
            if compare:
                case["torch_motion_correction"] = _compare(sim, gain, detector, device)
            if compete:
                case["competing"] = _competing(sim, options, total_s)
            report["cases"].append(case)
            release_freed_memory()
    report["summary"] = _summary(report["cases"])
    return report


def _compare(sim: Any, gain: Any, detector: Any, device: str) -> dict[str, Any]:
    """teamtomo's torch-motion-correction on the same movie (global trajectory only).

    Times compare like with like, each the best of :data:`COMPARE_REPEATS` runs (a shared
    machine's load only ever adds time): its global estimate against our gain correction plus
    global alignment, both from raw frames to a trajectory.
    """
    from causalscope.daemon.bench._tmc import run_torch_motion_correction
    from causalscope.models.motion.gain import apply_gain_and_defects
    from causalscope.models.motion.global_alignment import align_global

    frames = sim.frames.astype(np.float32) * detector.gain_reference[None].astype(np.float32)
    try:
        shifts = run_torch_motion_correction(frames, pixel_size_angstrom=1.0, device=device)
    except ImportError as error:
        return {"available": False, "reason": str(error)}

    def ours() -> None:
        corrected = apply_gain_and_defects(sim.frames, gain=gain, device=device)
        align_global(
            corrected.frames,
            pixel_size_angstrom=1.0,
            dose_per_frame_e_per_a2=40.0 / sim.frames.shape[0],
            voltage_kv=300.0,
        )

    def theirs() -> None:
        run_torch_motion_correction(frames, pixel_size_angstrom=1.0, device=device)

    ours_s, theirs_s = _best_time(ours, device), _best_time(theirs, device)
    errors = motion_errors(shifts, None, sim)
    return {
        "available": True,
        "global_rms_px": round(errors["global_rms_px"], 4),
        "time_s": round(theirs_s, 3),
        "ours_global_time_s": round(ours_s, 3),
        "speed_ratio_theirs_over_ours": round(theirs_s / ours_s, 2),
    }


def _competing(sim: Any, options: dict[str, Any], alone_s: float) -> dict[str, Any]:
    """The same correction (``options``) again while another process keeps one core busy: the
    time and its ratio to the time alone (losing one of two cores alone would make it up to
    2x)."""
    import multiprocessing

    import torch

    from causalscope.models.motion import correct_motion

    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    spinner = context.Process(target=_spin, args=(stop,), daemon=True)
    spinner.start()
    try:
        time.sleep(0.5)  # the competitor is running before the clock starts
        started = time.perf_counter()
        result = correct_motion(sim.frames, **options)
        if str(options["device"]).startswith("cuda"):
            torch.cuda.synchronize()
        competing_s = time.perf_counter() - started
    finally:
        stop.set()
        spinner.join(timeout=5)
    return {
        "time_s": round(competing_s, 3),
        "slowdown": round(competing_s / alone_s, 2),
        "torch_threads": torch.get_num_threads(),
        "stages_s": {k: round(v, 3) for k, v in result.timings_s.items()},
    }


def _best_time(run: Any, device: str) -> float:
    import torch

    times = []
    for _ in range(COMPARE_REPEATS):
        started = time.perf_counter()
        run()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return min(times)


def _summary(cases: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in sorted({c["case"] for c in cases}):
        rows = [c for c in cases if c["case"] == name]
        out[name] = {
            "global_rms_px_max": max(c["global_rms_px"] for c in rows),
            "local_rms_px_max": max(c["local_rms_px"] for c in rows),
            "time_s_median": float(np.median([c["time_s"] for c in rows])),
            # the chain the peers run: no even/odd alignments of its own for Delta-Repro
            "without_halves_s_median": round(
                float(np.median([c["time_s"] - c["stages_s"].get("halves", 0.0) for c in rows])), 3
            ),
            "peak_rss_increase_gib_max": max(c["peak_rss_increase_gib"] for c in rows),
        }
    return out
