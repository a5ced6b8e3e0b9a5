"""2D classification benchmark: a simulated session of two species and junk, classified as
the live evaluator does (batches as they would arrive, the classifier's own full passes, one
at the end), selected automatically, and scored against the truth.

Particles come from :func:`models.simulate.particle_stack.simulate_particle_stack`: apoferritin
(6z6u) and beta-galactosidase (5a1a) from ``../shared/data/models`` (the built-in phantom and
the elongated phantom without it), at random poses, with ice blobs, aggregates and carbon
edges as junk; CTF, ice and shot noise at ``dose``; phase-flipped and normalised as
extraction writes them. Reported per seed: the purity of every selected class (the share of
its kept particles from its most common species), the share of junk rejected (in a rejected
class or an outlier) and of good particles kept, each selected class's FRC against the
projection of its species at the pose of its most probable member (resolution at FRC 0.5,
on the class-average grid), and the time per particle of the updates and of a full pass.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_classes_bench"]

GOOD = ("apoferritin", "beta_galactosidase")


def _specimens(shared_data: Path | None) -> tuple[dict[str, Any], str]:
    from causalscope.models.simulate.specimen import (
        elongated_phantom_specimen,
        phantom_specimen,
    )

    models = None if shared_data is None else shared_data / "models"
    if models is not None and (models / "6z6u.pdb").is_file() and (models / "5a1a.pdb").is_file():
        from causalscope.daemon.simulator import load_specimen

        found = {
            "apoferritin": load_specimen(str(models / "6z6u.pdb")),
            "beta_galactosidase": load_specimen(str(models / "5a1a.pdb")),
        }
        return found, "6z6u.pdb and 5a1a.pdb"
    phantoms = {
        "apoferritin": phantom_specimen(),
        "beta_galactosidase": elongated_phantom_specimen(),
    }
    return phantoms, "built-in phantoms (no ../shared/data/models)"


def _classify(
    stack: Any, *, classes: int, batch: int, diameter: float
) -> tuple[Any, Any, dict[str, float]]:
    """The classifier after batches of ``batch`` and a final full pass; timings."""
    import torch

    from causalscope.daemon.bench.reconstruction_refine import _stack_ctfs
    from causalscope.models.classification import Class2D, Class2DSettings

    ctfs = _stack_ctfs(stack)
    images = torch.as_tensor(stack.images)
    model = Class2D(
        box_px=int(images.shape[-1]),
        pixel_size_angstrom=stack.pixel_size_angstrom,
        settings=Class2DSettings(n_classes=classes, particle_diameter_angstrom=diameter),
    )
    n = len(images)
    started = time.perf_counter()
    for first in range(0, n, batch):
        index = np.arange(first, min(n, first + batch))
        model.partial_fit(images[index], ctfs.take(index), index)
    updates_s = time.perf_counter() - started
    started = time.perf_counter()
    everything = model.reassign_all()
    full_s = time.perf_counter() - started
    timing = {
        "updates_ms_per_particle": 1e3 * updates_s / n,
        "full_pass_ms_per_particle": 1e3 * full_s / n,
    }
    return model, everything, timing


def _class_frc(model: Any, everything: Any, stack: Any, specimens: dict[str, Any], k: int) -> Any:
    """FRC 0.5 resolution (A) of class ``k``'s average against its species' projection at
    the pose of its most probable member, turned as the class says."""
    import torch

    from causalscope.models.classification import frc_first_crossing_angstrom
    from causalscope.models.classification._grids import rotate_images
    from causalscope.models.reconstruction.resample import fourier_crop
    from causalscope.models.restoration import fourier_ring_correlation
    from causalscope.models.simulate.particle_stack import project_specimen

    members = np.flatnonzero(everything.class_index == k)
    best = members[np.argmax(everything.posterior_max[members])]
    species = str(stack.labels[best])
    if species not in specimens:
        return None
    box = stack.images.shape[-1]
    projected = project_specimen(
        specimens[species],
        stack.rotations[best][None],
        box_px=box,
        pixel_size_angstrom=stack.pixel_size_angstrom,
    )
    truth = fourier_crop(torch.as_tensor(projected, dtype=torch.float32), model.grid.box)
    # a particle is its class average turned by psi: so is its view
    psi = torch.tensor([np.deg2rad(everything.psi_deg[best])], dtype=torch.float32)
    average = torch.as_tensor(model.averages()[k])[None]
    turned = rotate_images(average, psi)
    frc = fourier_ring_correlation(turned[0], truth[0])
    return frc_first_crossing_angstrom(
        frc, pixel_size_angstrom=float(model.grid.pixel_size_angstrom), threshold=0.5
    )


def _one_seed(seed: int, specimens: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    from causalscope.models.classification import class_metrics, select_classes
    from causalscope.models.simulate.particle_stack import simulate_particle_stack

    started = time.perf_counter()
    stack = simulate_particle_stack(
        specimens,
        n=options["n"],
        box_px=options["box_px"],
        pixel_size_angstrom=options["apix"],
        seed=seed,
        junk_fractions={"ice": 0.05, "aggregate": 0.05, "carbon": 0.05},
        dose_e_per_a2=options["dose"],
        atom_stride=options["atom_stride"],
    )
    simulated_s = time.perf_counter() - started
    model, everything, timing = _classify(
        stack, classes=options["classes"], batch=options["batch"], diameter=options["diameter"]
    )
    metrics = class_metrics(model, everything, particle_diameter_angstrom=options["diameter"])
    keep = np.asarray(select_classes(metrics, threshold=0.5))
    labels = np.asarray(stack.labels).astype(str)
    kept = keep[everything.class_index] & ~everything.outlier & (everything.class_index >= 0)
    good = np.isin(labels, GOOD)
    selected: list[dict[str, Any]] = []
    for k in np.flatnonzero(keep):
        members = labels[kept & (everything.class_index == k)]
        if members.size == 0:
            continue
        species, counts = np.unique(members, return_counts=True)
        frc = _class_frc(model, everything, stack, specimens, int(k))
        selected.append(
            {
                "class": int(k),
                "particles": int(members.size),
                "species": str(species[np.argmax(counts)]),
                "purity": float(counts.max() / members.size),
                "frc05_angstrom": None if frc is None else float(frc),
            }
        )
    return {
        "seed": seed,
        "particles": len(labels),
        "good": int(good.sum()),
        "junk": int((~good).sum()),
        "selected_classes": len(selected),
        "worst_purity": min((float(c["purity"]) for c in selected), default=None),
        "junk_rejected": float(np.mean(~kept[~good])) if (~good).any() else None,
        "good_kept": float(np.mean(kept[good])),
        "classes": selected,
        "simulate_s": simulated_s,
        **timing,
    }


def run_classes_bench(
    *,
    seeds: list[int],
    n: int = 3000,
    classes: int = 50,
    batch: int = 1000,
    shared_data: Path | None = None,
) -> dict[str, Any]:
    """Classify ``n`` simulated particles per seed and score the selection (module
    docstring); the report's ``summary`` has the worst case over the seeds."""
    import torch

    specimens, source = _specimens(shared_data)
    options = {
        "n": n,
        "classes": classes,
        "batch": batch,
        "box_px": 128,
        "apix": 2.0,
        "dose": 40.0,
        "diameter": 160.0,
        "atom_stride": 4,  # the low-resolution signal classification sees is unchanged
    }
    runs = []
    for seed in seeds:
        result = _one_seed(seed, specimens, options)
        print(
            f"seed {seed}: worst purity {result['worst_purity']}, junk rejected "
            f"{result['junk_rejected']:.2f}, good kept {result['good_kept']:.2f}, "
            f"{result['updates_ms_per_particle']:.2f} ms/particle",
            file=sys.stderr,
        )
        runs.append(result)
    summary = {
        "specimens": source,
        "particles": n,
        "classes": classes,
        "worst_purity": min(r["worst_purity"] or 0.0 for r in runs),
        "junk_rejected_min": min(r["junk_rejected"] or 0.0 for r in runs),
        "good_kept_min": min(r["good_kept"] for r in runs),
        "updates_ms_per_particle": max(r["updates_ms_per_particle"] for r in runs),
        "full_pass_ms_per_particle": max(r["full_pass_ms_per_particle"] for r in runs),
        "torch_threads": torch.get_num_threads(),
    }
    return {"summary": summary, "runs": runs, "options": options}
