"""Ab-initio benchmark: a map from simulated particles without a reference, against the truth
and against reference-based refinement of the same particles.

Particles come from :func:`models.simulate.particle_stack.simulate_particle_stack` (atoms
projected, CTF, B-factor 60 A^2, shot noise at 40 e/A^2, ice; phase-flipped, inverted and
normalised as extraction writes them; the truth map is ``specimen_map`` of the same atoms),
as in the refinement benchmark. Per seed: :func:`models.reconstruction.ab_initio.ab_initio`
with its settings, then the map superposed on the truth in both hands
(:func:`models.reconstruction.map_align.align_map`) and its FSC against the truth at 0.5
(unmasked); the gold-standard refinement of the same particles from the truth low-passed to
30 A (C1: the atomic model's symmetry axes need not lie in the standard orientation), its
masked FSC at 0.143 and its map's FSC against the truth at 0.5; the ratio of the ab-initio
resolution to the gold-standard one (the goal: at most 2), the hand found with the
correlation in each hand, and the times. Then the same refinement from the ab-initio map (what
``causalscope reconstruct`` without a reference does): its gold-standard resolution and,
superposed on the truth, its FSC against the truth at 0.5. On ``device="cuda"`` ab initio and
both refinements compute on the GPU, each timer waits for the GPU's queued work, and the peak
GPU allocation of each is reported.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_ab_initio_bench"]


def _one_seed(
    seed: int,
    *,
    specimen: Any,
    n: int,
    box_px: int,
    apix: float,
    settings: Any,
    refine_iterations: int,
    device: str,
) -> dict[str, Any]:
    import torch
    from torch_fourier_shell_correlation import fourier_shell_correlation

    from causalscope.daemon.bench._measure import peak_memory, synchronize
    from causalscope.daemon.bench.reconstruction_refine import _stack_ctfs
    from causalscope.models.reconstruction import fsc_resolution_angstrom
    from causalscope.models.reconstruction.ab_initio import ab_initio
    from causalscope.models.reconstruction.map_align import align_map, apply_alignment
    from causalscope.models.reconstruction.refine import RefinementSettings, RunningRefinement
    from causalscope.models.simulate.density import specimen_map
    from causalscope.models.simulate.particle_stack import simulate_particle_stack

    stack = simulate_particle_stack(
        {"specimen": specimen},
        n=n,
        box_px=box_px,
        pixel_size_angstrom=apix,
        seed=seed,
        junk_fractions={},
    )
    truth = specimen_map(
        specimen, box_px=box_px, pixel_size_angstrom=apix, voltage_kv=stack.voltage_kv
    )
    ctfs = _stack_ctfs(stack)
    images = torch.as_tensor(stack.images)

    def progress(step: Any) -> None:
        if step.iteration % 10 == 0:
            print(
                f"seed {seed}: ab initio {step.iteration}/{settings.iterations}, "
                f"{step.resolution_angstrom:.1f} A, top pose p {step.mean_top_weight:.2f}",
                file=sys.stderr,
            )

    with peak_memory(device) as ab_initio_memory:
        t0 = time.perf_counter()
        result = ab_initio(
            images, ctfs, pixel_size_angstrom=apix, settings=settings, progress=progress,
            device=device,
        )  # fmt: skip
        synchronize(device)
        ab_initio_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    found = align_map(
        result.volume,
        truth,
        pixel_size_angstrom=apix,
        resolution_angstrom=settings.final_resolution_angstrom,
    )
    align_s = time.perf_counter() - t0
    aligned = apply_alignment(result.volume, found)
    against_truth = fourier_shell_correlation(aligned, truth)
    ab_initio_05 = fsc_resolution_angstrom(against_truth, pixel_size_angstrom=apix, threshold=0.5)
    with peak_memory(device) as refine_memory:
        synchronize(device)
        t0 = time.perf_counter()
        refinement = RunningRefinement(
            truth, pixel_size_angstrom=apix, settings=RefinementSettings(), device=device
        )
        refinement.refine(images, ctfs, 1 + np.arange(n) % 2, iterations=refine_iterations)
        synchronize(device)
        refine_s = time.perf_counter() - t0
    assert refinement.fsc is not None
    gold = refinement.fsc.resolution_angstrom(0.143)
    reference_a, reference_b = (half.cpu() for half in refinement.half_maps())
    reference_05 = fsc_resolution_angstrom(
        fourier_shell_correlation((reference_a + reference_b) / 2, truth),
        pixel_size_angstrom=apix,
        threshold=0.5,
    )
    synchronize(device)
    t0 = time.perf_counter()
    from_ab_initio = RunningRefinement(
        result.volume, pixel_size_angstrom=apix, settings=RefinementSettings(), device=device
    )
    from_ab_initio.refine(images, ctfs, 1 + np.arange(n) % 2, iterations=refine_iterations)
    assert from_ab_initio.fsc is not None
    half_a, half_b = (half.cpu() for half in from_ab_initio.half_maps())
    refined = (half_a + half_b) / 2
    placed = apply_alignment(
        refined,
        align_map(refined, truth, pixel_size_angstrom=apix, resolution_angstrom=10.0),
    )
    refined_05 = fsc_resolution_angstrom(
        fourier_shell_correlation(placed, truth), pixel_size_angstrom=apix, threshold=0.5
    )
    ab_initio_refine_s = time.perf_counter() - t0
    print(
        f"seed {seed}: ab initio {ab_initio_05:.2f} A vs truth (FSC 0.5), reference-based "
        f"{gold:.2f} A (FSC 0.143), hand {found.hand}",
        file=sys.stderr,
    )
    return {
        "seed": seed,
        "ab_initio_truth_05_angstrom": ab_initio_05,
        "ab_initio_self_0143_angstrom": result.resolution_angstrom,
        "reference_gold_0143_angstrom": gold,
        "reference_gold_05_angstrom": refinement.fsc.resolution_angstrom(0.5),
        "reference_truth_05_angstrom": reference_05,
        "ratio": ab_initio_05 / gold,
        "refined_from_ab_initio_gold_0143_angstrom": from_ab_initio.fsc.resolution_angstrom(0.143),
        "refined_from_ab_initio_truth_05_angstrom": refined_05,
        "hand": found.hand,
        "correlation_as_is": found.correlations["as_is"],
        "correlation_mirrored": found.correlations["mirrored"],
        "final_top_pose_probability": result.history[-1].mean_top_weight,
        "ab_initio_s": ab_initio_s,
        "align_s": align_s,
        "reference_refine_s": refine_s,
        "refine_from_ab_initio_s": ab_initio_refine_s,
        "ab_initio_peak_gpu_gib": ab_initio_memory.cuda_peak_gib,
        "reference_refine_peak_gpu_gib": refine_memory.cuda_peak_gib,
    }


def run_ab_initio_bench(
    *,
    seeds: list[int],
    structure: Path,
    n: int = 1000,
    box_px: int = 80,
    pixel_size_angstrom: float = 2.56,
    symmetry: str = "C1",
    final_resolution_angstrom: float = 12.0,
    iterations: int = 40,
    refine_iterations: int = 2,
    device: str = "cpu",
) -> dict[str, Any]:
    """Run it on ``structure`` (PDB/mmCIF/MRC) on ``device``; ``summary`` lists each seed's
    numbers."""
    from causalscope.daemon.simulator import load_specimen
    from causalscope.models.reconstruction.ab_initio import AbInitioSettings

    specimen = load_specimen(str(structure))
    runs = []
    for seed in seeds:
        settings = AbInitioSettings(
            iterations=iterations,
            final_resolution_angstrom=final_resolution_angstrom,
            symmetry=symmetry,
            seed=seed,
        )
        runs.append(
            _one_seed(
                seed,
                specimen=specimen,
                n=n,
                box_px=box_px,
                apix=pixel_size_angstrom,
                settings=settings,
                refine_iterations=refine_iterations,
                device=device,
            )
        )
    summary: dict[str, Any] = {
        "structure": Path(structure).name,
        "particles": n,
        "box_px": box_px,
        "pixel_size_angstrom": pixel_size_angstrom,
        "symmetry": symmetry,
        "final_resolution_angstrom": final_resolution_angstrom,
        "device": device,
    }
    summary |= {k: [r[k] for r in runs] for k in runs[0] if k != "seed"}
    return {"summary": summary, "runs": runs}
