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


def _star_files(paths: list[Path]) -> list[Path]:
    stars: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("particles/*.star")) or sorted(path.glob("*.star"))
            if not found:
                raise InputError("No particles", f"{path} holds no particles/*.star", path=path)
            stars += found
        elif path.is_file():
            stars.append(path)
        else:
            raise InputError("No such file", f"{path} does not exist", path=path)
    return stars


def _load(stars: list[Path], box_px: int) -> tuple[Any, Any, Any, np.ndarray, float]:
    """Images (binned), CTFs, the table of rows, half-sets and the pixel size."""
    import pandas as pd
    import starfile
    import torch

    from causalscope.daemon.formats.particles_read import read_particles
    from causalscope.models.reconstruction import ParticleCtfs
    from causalscope.models.reconstruction.resample import fourier_crop

    sets = [read_particles(star) for star in stars]
    sizes = {(s.pixel_size_angstrom, s.images.shape[-1]) for s in sets if s.images is not None}
    if len(sizes) != 1:
        raise InputError("Mixed particles", f"pixel sizes and boxes differ: {sorted(sizes)}")
    pixel, box = sizes.pop()
    target = min(box, box_px - box_px % 2)
    images = torch.cat([torch.as_tensor(s.images) for s in sets if s.images is not None])
    images = fourier_crop(images, target)
    apix = pixel * box / target
    ctf_sets = [s.ctfs for s in sets]
    ctfs = ParticleCtfs(
        np.concatenate([c.defocus_u_angstrom for c in ctf_sets]),
        np.concatenate([c.defocus_v_angstrom for c in ctf_sets]),
        np.concatenate([c.defocus_angle_deg for c in ctf_sets]),
        voltage_kv=np.concatenate([c.per_particle("voltage_kv") for c in ctf_sets]),
        spherical_aberration_mm=np.concatenate(
            [c.per_particle("spherical_aberration_mm") for c in ctf_sets]
        ),
        amplitude_contrast=np.concatenate([c.per_particle("amplitude_contrast") for c in ctf_sets]),
        pixel_size_angstrom=apix,
        phase_flipped=any(c.phase_flipped for c in ctf_sets),
    )
    halves = [s.half_set for s in sets if s.half_set is not None]
    n = len(images)
    half_set = np.concatenate(halves) if len(halves) == len(sets) else 1 + np.arange(n) % 2
    rows = pd.concat(
        [starfile.read(star, always_dict=True)["particles"] for star in stars], ignore_index=True
    )
    return images, ctfs, rows, half_set, apix


def run(args: argparse.Namespace) -> int:
    """Refine and write the maps, the FSC and the poses."""
    import torch

    from causalscope.daemon.formats.maps import read_mrc_map, write_fsc_star, write_mrc_map
    from causalscope.models.reconstruction.coverage import orientation_coverage
    from causalscope.models.reconstruction.refine import (
        RefinementSettings,
        RunningRefinement,
        low_pass,
    )
    from causalscope.models.reconstruction.resample import rescale_map
    from causalscope.models.reconstruction.symmetry import symmetry_matrices
    from causalscope.models.rotations import euler_zyz_from_matrices

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.iterations < 1 or args.box < 16:
        raise InputError(
            "Bad option", f"--iterations {args.iterations} (>= 1), --box {args.box} (>= 16)"
        )
    images, ctfs, rows, half_set, apix = _load(_star_files(args.particles), args.box)
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
    out: Path = args.out
    half_a, half_b = refinement.half_maps()
    resolution = refinement.resolution_angstrom
    full = low_pass((half_a + half_b) / 2, resolution_angstrom=resolution, pixel_size_angstrom=apix)
    for name, data in (("half1.mrc", half_a), ("half2.mrc", half_b), ("map.mrc", full)):
        write_mrc_map(out / name, data.numpy(), pixel_size_angstrom=apix)
    assert refinement.fsc is not None
    write_fsc_star(
        out / "postprocess.star",
        corrected=refinement.fsc.masked.numpy(),
        unmasked=refinement.fsc.unmasked.numpy(),
        pixel_size_angstrom=apix,
        resolution_angstrom=resolution,
        half_maps=("half1.mrc", "half2.mrc"),
    )
    euler = euler_zyz_from_matrices(alignment.rotations.numpy().astype(np.float64))
    posed = rows.copy()
    posed["rlnAngleRot"], posed["rlnAngleTilt"], posed["rlnAnglePsi"] = euler.T
    posed["rlnOriginXAngst"] = alignment.offsets_px[:, 0].numpy() * apix
    posed["rlnOriginYAngst"] = alignment.offsets_px[:, 1].numpy() * apix
    posed["rlnRandomSubset"] = half_set
    import starfile

    starfile.write({"particles": posed}, out / "particles.star", overwrite=True)
    group = symmetry_matrices(args.symmetry)
    coverage = orientation_coverage(alignment.rotations.numpy(), symmetry=group)
    summary = {
        "particles": len(images),
        "box_px": int(images.shape[-1]),
        "pixel_size_angstrom": apix,
        "resolution_angstrom": resolution,
        "resolution_unmasked_angstrom": refinement.fsc.resolution_angstrom(0.143, masked=False),
        "resolution_fsc_05_angstrom": refinement.fsc.resolution_angstrom(0.5),
        "orientation_coverage": coverage.coverage,
        "largest_orientation_gap_deg": coverage.largest_gap_deg,
        "seconds": time.perf_counter() - started,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return 0
