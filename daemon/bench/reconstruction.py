"""Reconstruction benchmark: gold-standard FSC against the truth, the Rosenthal-Henderson
B-factor against the simulated envelope, and the cost per particle as the set grows.

Each seed draws a map of point scatterers (a flat spectrum, as a protein's is beyond ~8 A, so
that the only fall-off is the envelope's), projects it at ``n`` random poses, applies a CTF per
particle (defocus 0.8-2.5 um) and the B-factor envelope, adds white noise, and reconstructs
two half-sets with the true poses from ``smallest`` particles, doubling. At each size: the
masked and unmasked half-map FSC at 0.143 and 0.5, and the full map's FSC against the truth at
0.5 (the two should agree: ``FSC_true = sqrt(2 FSC / (1 + FSC))`` is 0.5 where the half-map
FSC is 0.143); the Rosenthal-Henderson fit over the sizes, as RELION's ``bfactor_plot`` makes
it (``1/d^2`` against ``ln N``) and with the slice-density term
(:mod:`models.reconstruction.forecast`), and the forecast of the largest size made from the
others, and how well calibrated the forecasts between every two sizes are
(:mod:`daemon.bench.forecast_calibration`).
Time: inserting a particle, reconstructing both halves, and the FSC, per size.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

__all__ = ["run_reconstruction_bench"]


def _point_map(box_px: int, rng: np.random.Generator) -> Any:
    import torch

    n_points = 4 * box_px**2
    radius = 0.3 * box_px
    directions = rng.normal(size=(n_points, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    points = directions * radius * np.cbrt(rng.uniform(0, 1, n_points))[:, None] + box_px // 2
    volume = torch.zeros(box_px**3, dtype=torch.float64)
    base = np.floor(points).astype(int)
    frac = points - base
    for corner in np.ndindex(2, 2, 2):
        weight = np.prod(np.where(corner, frac, 1 - frac), axis=1)
        x, y, z = (base + corner).T
        volume.index_add_(
            0, torch.as_tensor((z * box_px + y) * box_px + x), torch.as_tensor(weight)
        )
    return volume.reshape(box_px, box_px, box_px).float()


def _random_ctfs(rng: np.random.Generator, n: int, *, apix: float, bfactor: float) -> Any:
    """Defocus 0.8-2.5 um, up to 500 A of astigmatism at any angle, 300 kV, Cs 2.7 mm."""
    from causalscope.models.reconstruction import ParticleCtfs

    defocus = rng.uniform(8_000.0, 25_000.0, n)
    ctfs = ParticleCtfs(
        defocus,
        defocus + rng.uniform(0, 500, n),
        rng.uniform(0, 180, n),
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.1,
        pixel_size_angstrom=apix,
        bfactor_angstrom2=bfactor,
    )
    return ctfs


def _measure(halves: list[Any], truth: Any, mask: Any, *, apix: float) -> dict[str, Any]:
    """Resolutions of the half-sets so far, against each other and the full map's against the
    truth, and the time to reconstruct and to compute the FSC."""
    from torch_fourier_shell_correlation import fourier_shell_correlation

    from causalscope.models.reconstruction import fsc_resolution_angstrom, half_map_fsc

    t0 = time.perf_counter()
    maps = [a.reconstruct() for a in halves]
    reconstruct_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fsc = half_map_fsc(maps[0], maps[1], pixel_size_angstrom=apix, mask=mask)
    fsc_s = time.perf_counter() - t0
    full = halves[0].merged(halves[1]).reconstruct()
    against_truth = fourier_shell_correlation(full * mask, truth * mask)
    return {
        "fsc_curve": fsc.unmasked.tolist(),
        "particles": halves[0].count + halves[1].count,
        "fsc_0143_angstrom": fsc.resolution_angstrom(0.143),
        "fsc_0143_unmasked_angstrom": fsc.resolution_angstrom(0.143, masked=False),
        "fsc_05_angstrom": fsc.resolution_angstrom(0.5),
        "truth_fsc_05_angstrom": fsc_resolution_angstrom(
            against_truth, pixel_size_angstrom=apix, threshold=0.5
        ),
        "reconstruct_s": reconstruct_s,
        "fsc_s": fsc_s,
    }


def _one_seed(
    seed: int, *, n: int, box_px: int, apix: float, bfactor: float, noise_sd: float, smallest: int
) -> dict[str, Any]:
    import torch

    from causalscope.models.reconstruction import (
        Accumulator,
        Projector,
        doubling_subsets,
        fit_rosenthal_henderson,
        soft_spherical_mask,
    )
    from causalscope.models.reconstruction.forecast import fit_ssnr
    from causalscope.models.rotations import random_rotations

    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    truth = _point_map(box_px, rng)
    projector = Projector(truth)
    rotations = torch.as_tensor(random_rotations(rng, n), dtype=torch.float32)
    ctfs = _random_ctfs(rng, n, apix=apix, bfactor=bfactor)
    mask = soft_spherical_mask(box_px, radius_px=0.3 * box_px + 3, edge_px=4)
    halves = [Accumulator(box_px), Accumulator(box_px)]
    sizes = doubling_subsets(n, smallest=smallest)
    rows: list[dict[str, Any]] = []
    insert_s, start, chunk = 0.0, 0, 250
    for size in sizes:
        for first in range(start, size, chunk):
            index = np.arange(first, min(size, first + chunk))
            transform = projector.project_rfft(rotations[index]) * ctfs.take(index).rfft_grid(
                box_px
            )
            images = torch.fft.fftshift(
                torch.fft.irfft2(transform, s=(box_px, box_px)), dim=(-2, -1)
            )
            images = images + noise_sd * torch.randn(images.shape, generator=generator)
            grid = ctfs.take(index).rfft_grid(halves[0].padded_px)
            t0 = time.perf_counter()
            for h in (0, 1):
                pick = index % 2 == h
                halves[h].add(images[pick], rotations[index[pick]], grid[pick])
            insert_s += time.perf_counter() - t0
        start = size
        rows.append(_measure(halves, truth, mask, apix=apix))
        rows[-1]["insert_ms_per_particle"] = 1e3 * insert_s / size
    d = [r["fsc_0143_angstrom"] for r in rows]
    fit = fit_rosenthal_henderson(sizes, d)
    early = fit_rosenthal_henderson(sizes[:-1], d[:-1]) if len(sizes) > 3 else None
    forecast = early.resolution_at(sizes[-1]) if early else math.nan
    half_way = next((r for r in rows if 2 * r["particles"] == sizes[-1]), None)
    from_fsc = math.nan
    if half_way is not None:
        fit_one = fit_ssnr(
            np.array(half_way["fsc_curve"]),
            pixel_size_angstrom=apix,
            particles=half_way["particles"],
        )
        from_fsc = fit_one.resolution_at(sizes[-1])
    unmasked_last = rows[-1]["fsc_0143_unmasked_angstrom"]
    return {
        "seed": seed,
        "sizes": rows,
        "bfactor_angstrom2": fit.bfactor_angstrom2,
        "bfactor_sd_angstrom2": fit.bfactor_sd_angstrom2,
        "plain_bfactor_angstrom2": fit.plain_bfactor_angstrom2,
        "bfactor_error": fit.bfactor_angstrom2 / bfactor - 1,
        "forecast_largest_angstrom": forecast,
        "forecast_error": forecast / d[-1] - 1 if math.isfinite(forecast) else math.nan,
        "fsc_forecast_largest_angstrom": from_fsc,
        "fsc_forecast_error": from_fsc / unmasked_last - 1,
        "gold_vs_truth_error": [
            r["fsc_0143_angstrom"] / r["truth_fsc_05_angstrom"] - 1 for r in rows
        ],
    }


def run_reconstruction_bench(
    *,
    seeds: list[int],
    n: int = 8000,
    box_px: int = 48,
    pixel_size_angstrom: float = 1.0,
    bfactor_angstrom2: float = 60.0,
    noise_sd: float = 4.0,
    smallest: int = 250,
) -> dict[str, Any]:
    """Run the benchmark; ``summary`` holds the medians over seeds."""
    from causalscope.daemon.bench.forecast_calibration import forecast_calibration

    runs = [
        _one_seed(
            seed,
            n=n,
            box_px=box_px,
            apix=pixel_size_angstrom,
            bfactor=bfactor_angstrom2,
            noise_sd=noise_sd,
            smallest=smallest,
        )
        for seed in seeds
    ]
    gold = [abs(e) for r in runs for e in r["gold_vs_truth_error"]]
    summary = {
        "particles": n,
        "box_px": box_px,
        "simulated_bfactor_angstrom2": bfactor_angstrom2,
        "bfactor_angstrom2": [r["bfactor_angstrom2"] for r in runs],
        "plain_bfactor_angstrom2": [r["plain_bfactor_angstrom2"] for r in runs],
        "median_abs_gold_vs_truth_error": float(np.median(gold)),
        "max_abs_gold_vs_truth_error": float(np.max(gold)),
        "forecast_error": [r["forecast_error"] for r in runs],
        "fsc_forecast_error": [r["fsc_forecast_error"] for r in runs],
        "insert_ms_per_particle": [r["sizes"][-1]["insert_ms_per_particle"] for r in runs],
        "resolution_angstrom": [r["sizes"][-1]["fsc_0143_angstrom"] for r in runs],
        "forecast_calibration": forecast_calibration(runs, pixel_size_angstrom=pixel_size_angstrom),
    }
    return {"summary": summary, "runs": runs}
