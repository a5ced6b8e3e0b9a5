"""Gold-standard 3D refinement of particles against a reference map, or from an ab-initio map
when there is none, with progress.

PARTICLES are RELION particle STAR files (3.0 or 3.1+, with their MRCS stacks), or session
folders, whose ``particles/*.star`` are all read. The reference (``--reference``, an MRC map)
is resampled to the particles' pixel size and low-passed to --initial-resolution (30 A) so
that it does not bias the result. Particles larger than --box are binned to it (Fourier
cropping). Half-sets follow ``rlnRandomSubset`` when the file has one, else alternate.

Without --reference, a map is first built ab initio (stochastic gradient descent over pose
posteriors, as cryoSPARC's ab initio; ``models/reconstruction/ab_initio.py``) to
--ab-initio-resolution (12 A), written as ``ab_initio.mrc`` and refined as a reference would
be. A session folder then gives its 2D-class-selected particles
(``reconstruction/classes/selected_particles.star``) when the session has them, else all its
particles. Projections do not determine the hand: the ab-initio map, and so the refined one,
may be the mirror image of the molecule (compare with a known structure or a feature of known
hand).

Writes to --out: ``half1.mrc``, ``half2.mrc`` (the unfiltered half-maps), ``map.mrc`` (both
halves, Wiener-filtered by their FSC and low-passed at the resolution), ``postprocess.star``
(RELION's layout: the FSC curves and the final resolution), ``particles.star`` (the input
rows with the assigned poses and origins, rlnAngleRot/Tilt/Psi, rlnOriginX/YAngst, and the
half-set) and ``summary.json`` (resolutions, orientation coverage and its largest gap, time;
without a reference also the ab-initio settings, its resolution and time).

Examples:
  causalscope reconstruct session/ --reference apoferritin.mrc --out refine/ --iterations 3
  causalscope reconstruct session/ --out refine/ --symmetry D2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from causalscope.daemon.commands._particles import load_particles, star_files
from causalscope.models.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the reconstruct options."""
    parser.add_argument("particles", nargs="+", type=Path, metavar="PARTICLES")
    parser.add_argument(
        "--reference",
        type=Path,
        metavar="MAP",
        help="the starting map; without one, a map is built ab initio from the particles",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR")
    parser.add_argument("--box", type=int, default=128, help="bin particles to this box (128)")
    parser.add_argument("--iterations", type=int, default=3, help="full passes (3)")
    parser.add_argument(
        "--initial-resolution", type=float, default=30.0, metavar="A", help="reference low-pass"
    )
    parser.add_argument(
        "--symmetry",
        default="C1",
        help="point group in its standard orientation: C1 (default), C<n>, D<n>, T, O, I",
    )
    parser.add_argument("--threads", type=int, metavar="T", help="torch CPU threads")
    parser.add_argument(
        "--ab-initio-resolution",
        type=float,
        default=12.0,
        metavar="A",
        help="without --reference: the ab-initio map's final resolution limit (12)",
    )
    parser.add_argument(
        "--ab-initio-iterations",
        type=int,
        default=40,
        metavar="N",
        help="without --reference: minibatches of 100 particles (40)",
    )
    parser.add_argument("--seed", type=int, default=0, help="ab initio's random start (0)")


def _ab_initio_particles(paths: list[Path]) -> list[Path]:
    """A session folder's 2D-class-selected particles when it has them, else its particles."""
    stars: list[Path] = []
    for path in paths:
        selected = path / "reconstruction" / "classes" / "selected_particles.star"
        stars += [selected] if path.is_dir() and selected.is_file() else star_files([path])
    return stars


def _ab_initio_map(args: argparse.Namespace, images: Any, ctfs: Any, apix: float) -> Any:
    """The ab-initio map (written as ``ab_initio.mrc``) and what to report of it."""
    from causalscope.daemon.formats.maps import write_mrc_map
    from causalscope.models.reconstruction.ab_initio import AbInitioSettings, ab_initio

    try:
        settings = AbInitioSettings(
            iterations=args.ab_initio_iterations,
            final_resolution_angstrom=min(args.ab_initio_resolution, args.initial_resolution),
            start_resolution_angstrom=max(35.0, args.ab_initio_resolution),
            symmetry=args.symmetry,
            seed=args.seed,
        )
    except ValueError as error:
        raise InputError("Bad ab-initio option", str(error)) from error
    started = time.perf_counter()

    def progress(step: Any) -> None:
        if step.iteration % 5 == 0 or step.iteration == settings.iterations:
            print(
                f"ab initio {step.iteration}/{settings.iterations}: "
                f"{step.resolution_angstrom:.1f} A, top pose p {step.mean_top_weight:.2f} "
                f"({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
            )

    result = ab_initio(images, ctfs, pixel_size_angstrom=apix, settings=settings, progress=progress)
    args.out.mkdir(parents=True, exist_ok=True)
    write_mrc_map(args.out / "ab_initio.mrc", result.volume.numpy(), pixel_size_angstrom=apix)
    print(
        f"ab initio: {result.resolution_angstrom:.1f} A (halves of the last pass, FSC 0.143) "
        f"-> {args.out / 'ab_initio.mrc'}; the hand is undetermined from projections alone",
        file=sys.stderr,
    )
    report = {
        "final_resolution_angstrom": settings.final_resolution_angstrom,
        "iterations": settings.iterations,
        "resolution_angstrom": result.resolution_angstrom,
        "seconds": time.perf_counter() - started,
        "hand": "undetermined from projections alone",
    }
    return result.volume, report


def _write_outputs(
    out: Path, refinement: Any, alignment: Any, rows: Any, half_set: np.ndarray
) -> None:
    """The half-maps, the filtered map, the FSC and the posed particles."""
    import starfile

    from causalscope.daemon.formats.maps import write_refinement_maps
    from causalscope.models.rotations import euler_zyz_from_matrices

    write_refinement_maps(out, refinement)
    apix = refinement.pixel_size_angstrom
    euler = euler_zyz_from_matrices(alignment.rotations.numpy().astype(np.float64))
    posed = rows.copy()
    posed["rlnAngleRot"], posed["rlnAngleTilt"], posed["rlnAnglePsi"] = euler.T
    posed["rlnOriginXAngst"] = alignment.offsets_px[:, 0].numpy() * apix
    posed["rlnOriginYAngst"] = alignment.offsets_px[:, 1].numpy() * apix
    posed["rlnRandomSubset"] = half_set
    starfile.write({"particles": posed}, out / "particles.star", overwrite=True)


def run(args: argparse.Namespace) -> int:
    """Refine and write the maps, the FSC and the poses."""
    import torch

    from causalscope.daemon.formats.maps import read_mrc_map
    from causalscope.models.reconstruction.coverage import orientation_coverage
    from causalscope.models.reconstruction.refine import (
        RefinementSettings,
        RunningRefinement,
    )
    from causalscope.models.reconstruction.resample import rescale_map
    from causalscope.models.reconstruction.symmetry import symmetry_matrices

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.iterations < 1 or args.box < 16:
        raise InputError(
            "Bad option", f"--iterations {args.iterations} (>= 1), --box {args.box} (>= 16)"
        )
    try:
        settings = RefinementSettings(
            initial_resolution_angstrom=args.initial_resolution, symmetry=args.symmetry
        )
        symmetry_matrices(args.symmetry)
    except ValueError as error:
        raise InputError("Bad symmetry", f"--symmetry {args.symmetry!r}: {error}") from error
    stars = star_files(args.particles) if args.reference else _ab_initio_particles(args.particles)
    images, ctfs, rows, half_set, apix = load_particles(stars, args.box)
    print(f"{len(images)} particles, box {images.shape[-1]} at {apix:.3f} A/px", file=sys.stderr)
    ab_initio_report = None
    if args.reference is None:
        reference, ab_initio_report = _ab_initio_map(args, images, ctfs, apix)
    else:
        volume, reference_apix = read_mrc_map(args.reference)
        reference = rescale_map(
            torch.as_tensor(volume),
            from_pixel_angstrom=reference_apix,
            to_pixel_angstrom=apix,
            box_px=images.shape[-1],
        )
    refinement = RunningRefinement(reference, pixel_size_angstrom=apix, settings=settings)
    started = time.perf_counter()

    def progress(iteration: int, resolution: float) -> None:
        elapsed = time.perf_counter() - started
        print(
            f"pass {iteration}/{args.iterations}: {resolution:.2f} A ({elapsed:.0f} s)",
            file=sys.stderr,
        )

    alignment = refinement.refine(
        images, ctfs, half_set, iterations=args.iterations, progress=progress
    )
    _write_outputs(args.out, refinement, alignment, rows, half_set)
    fsc = refinement.fsc
    assert fsc is not None  # refine() ends with an update
    group = symmetry_matrices(args.symmetry)
    coverage = orientation_coverage(alignment.rotations.numpy(), symmetry=group)
    summary: dict[str, Any] = {
        "particles": len(images),
        "box_px": int(images.shape[-1]),
        "pixel_size_angstrom": apix,
        "resolution_angstrom": refinement.resolution_angstrom,
        "resolution_unmasked_angstrom": fsc.resolution_angstrom(0.143, masked=False),
        "resolution_fsc_05_angstrom": fsc.resolution_angstrom(0.5),
        "orientation_coverage": coverage.coverage,
        "largest_orientation_gap_deg": coverage.largest_gap_deg,
        "seconds": time.perf_counter() - started,
    }
    if ab_initio_report is not None:
        summary["ab_initio"] = ab_initio_report
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return 0
