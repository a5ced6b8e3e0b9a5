"""Gold-standard 3D refinement of particles against a reference map, with progress.

PARTICLES are RELION particle STAR files (3.0 or 3.1+, with their MRCS stacks), or session
folders, whose ``particles/*.star`` are all read. The reference (``--reference``, an MRC map)
is resampled to the particles' pixel size and low-passed to --initial-resolution (30 A) so
that it does not bias the result. Particles larger than --box are binned to it (Fourier
cropping). Half-sets follow ``rlnRandomSubset`` when the file has one, else alternate.

Writes to --out: ``half1.mrc``, ``half2.mrc`` (the unfiltered half-maps), ``map.mrc`` (both
halves, Wiener-filtered by their FSC and low-passed at the resolution), ``postprocess.star``
(RELION's layout: the FSC curves and the final resolution), ``particles.star`` (the input
rows with the assigned poses and origins, rlnAngleRot/Tilt/Psi, rlnOriginX/YAngst, and the
half-set) and ``summary.json`` (resolutions, orientation coverage and its largest gap, time).

Example:
  causalscope reconstruct session/ --reference apoferritin.mrc --out refine/ --iterations 3
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
    parser.add_argument("--reference", required=True, type=Path, metavar="MAP")
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
    images, ctfs, rows, half_set, apix = load_particles(star_files(args.particles), args.box)
    volume, reference_apix = read_mrc_map(args.reference)
    reference = rescale_map(
        torch.as_tensor(volume),
        from_pixel_angstrom=reference_apix,
        to_pixel_angstrom=apix,
        box_px=images.shape[-1],
    )
    try:
        settings = RefinementSettings(
            initial_resolution_angstrom=args.initial_resolution, symmetry=args.symmetry
        )
        symmetry_matrices(args.symmetry)
    except ValueError as error:
        raise InputError("Bad symmetry", f"--symmetry {args.symmetry!r}: {error}") from error
    refinement = RunningRefinement(reference, pixel_size_angstrom=apix, settings=settings)
    started = time.perf_counter()
    print(f"{len(images)} particles, box {images.shape[-1]} at {apix:.3f} A/px", file=sys.stderr)

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
    summary = {
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
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return 0
