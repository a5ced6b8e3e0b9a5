"""Streaming 2D classification of particles, with the classes selected and shown.

PARTICLES are RELION particle STAR files (with their MRCS stacks) or session folders (their
``particles/*.star``), classified in batches of --batch as they would arrive live (each batch
updates the classes; full passes on the classifier's schedule, and one at the end). Classes
are then selected automatically (junk score below --threshold, see
``models/classification/metrics.py``); --select and --reject override that by class number.

Writes to --out: ``class_averages.mrcs`` (one average per class, protein bright),
``classes.png`` (the gallery: the averages in class order, rejected ones crossed out),
``model.star`` (RELION's ``data_model_classes``: reference image, class distribution,
estimated resolution), ``classes.json`` (per class: particles, effective sample size, FRC
resolution, junk score and its parts, selected), ``particles.star`` (every particle with
rlnClassNumber and rlnAnglePsi) and ``selected_particles.star`` (those of selected classes,
less the per-particle outliers).

Example:
  causalscope classes session/ --diameter-angstrom 150 --out classes/ --classes 50
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
    """Register the classes options."""
    parser.add_argument("particles", nargs="+", type=Path, metavar="PARTICLES")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR")
    parser.add_argument(
        "--diameter-angstrom", required=True, type=float, help="particle diameter (A)"
    )
    parser.add_argument("--classes", type=int, default=50, help="number of classes (50)")
    parser.add_argument("--batch", type=int, default=1000, help="particles per update (1000)")
    parser.add_argument("--threshold", type=float, default=0.5, help="junk score cut (0.5)")
    parser.add_argument("--select", type=int, nargs="*", default=[], metavar="K")
    parser.add_argument("--reject", type=int, nargs="*", default=[], metavar="K")
    parser.add_argument("--box", type=int, default=256, help="bin particles beyond this box")
    parser.add_argument("--threads", type=int, metavar="T", help="torch CPU threads")


def _write(
    out: Path, model: Any, everything: Any, metrics: list[Any], keep: np.ndarray, rows: Any
) -> None:
    import starfile

    from causalscope.daemon.formats.classes import write_class_files

    write_class_files(
        out,
        model.averages(),
        pixel_size_angstrom=float(model.grid.pixel_size_angstrom),
        keep=keep,
        particles=[m.n_particles for m in metrics],
        resolutions_angstrom=[m.resolution_angstrom for m in metrics],
    )
    classes = [{**m.__dict__, "selected": bool(keep[m.class_index])} for m in metrics]
    for entry in classes:
        entry["resolution_angstrom"] = float(min(entry["resolution_angstrom"], 999.0))
    (out / "classes.json").write_text(json.dumps(classes, indent=2, default=float) + "\n")
    table = rows.copy()
    table["rlnClassNumber"] = everything.class_index + 1
    table["rlnAnglePsi"] = everything.psi_deg
    starfile.write({"particles": table}, out / "particles.star", overwrite=True)
    chosen = keep[everything.class_index] & ~everything.outlier & (everything.class_index >= 0)
    starfile.write({"particles": table[chosen]}, out / "selected_particles.star", overwrite=True)


def run(args: argparse.Namespace) -> int:
    """Classify, select and write the classes."""
    import torch

    from causalscope.models.classification import (
        Class2D,
        Class2DSettings,
        class_metrics,
        select_classes,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.classes < 1 or args.batch < 1 or args.diameter_angstrom <= 0:
        raise InputError(
            "Bad option",
            f"--classes {args.classes}, --batch {args.batch} (>= 1), --diameter-angstrom "
            f"{args.diameter_angstrom} (> 0)",
        )
    # before the work: a class number that cannot exist is refused at once
    unknown = [k for k in (*args.select, *args.reject) if not 1 <= k <= args.classes]
    if unknown:
        raise InputError("No such class", f"classes {unknown}: there are {args.classes} (from 1)")
    images, ctfs, rows, _, apix = load_particles(star_files(args.particles), args.box)
    model = Class2D(
        box_px=int(images.shape[-1]),
        pixel_size_angstrom=apix,
        settings=Class2DSettings(
            n_classes=args.classes, particle_diameter_angstrom=args.diameter_angstrom
        ),
    )
    started = time.perf_counter()
    n = len(images)
    for first in range(0, n, args.batch):
        index = np.arange(first, min(n, first + args.batch))
        model.partial_fit(images[index], ctfs.take(index), index)
        print(
            f"{index[-1] + 1}/{n} particles ({time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
        )
    everything = model.reassign_all()
    metrics = class_metrics(model, everything, particle_diameter_angstrom=args.diameter_angstrom)
    manual = {k - 1: True for k in args.select} | {k - 1: False for k in args.reject}
    keep = np.asarray(select_classes(metrics, threshold=args.threshold, manual=manual))
    _write(args.out, model, everything, metrics, keep, rows)
    chosen = keep[everything.class_index] & ~everything.outlier & (everything.class_index >= 0)
    summary = {
        "particles": n,
        "classes": len(metrics),
        "selected_classes": int(keep.sum()),
        "selected_particles": int(chosen.sum()),
        "seconds": time.perf_counter() - started,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return 0
