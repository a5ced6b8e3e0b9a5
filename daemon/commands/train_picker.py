"""Train (or fine-tune) the learned particle picker from micrographs and their picks.

Each micrograph (MRC, TIFF, PNG or JPEG) comes with its particle coordinates (--coords: one
file per micrograph, in the same order, or one file that names them all: RELION STAR, CSV,
Topaz .txt, EMAN2/crYOLO .box or cryoSPARC .cs; see daemon/formats/coordinates.py) or an
expert mask of discs
(--masks: grey images, > 127 inside, any size proportional to the micrograph's; disc centres
are fitted at the given diameter). Picks may be sparse: training uses positive-unlabelled
learning, whose class prior comes from --expected-per-micrograph (default: every particle is
labelled). --simulated N adds N simulated micrographs with their truth. Writes the weights
(--out) and, beside them, a JSON record of the data, the loss, the steps and the time.

Example:
  causalscope train-picker mics/*.mrc --coords picks/*.star --diameter-angstrom 150 \\
      --out my_picker.pt --steps 2000
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from causalscope.daemon.commands._picker_args import add_diameter_arguments, diameter_px
from causalscope.models.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the train-picker options."""
    parser.add_argument("micrographs", nargs="*", type=Path, metavar="MICROGRAPH")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument(
        "--coords", nargs="+", type=Path, metavar="FILE", help="picks (STAR, CSV, .txt, .box, .cs)"
    )
    labels.add_argument("--masks", nargs="+", type=Path, metavar="FILE", help="disc masks")
    add_diameter_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, metavar="FILE", help="weights (.pt)")
    parser.add_argument("--steps", type=int, default=2000, metavar="S", help="steps (2000)")
    parser.add_argument("--simulated", type=int, default=0, metavar="N", help="simulated (0)")
    parser.add_argument("--init", type=Path, metavar="FILE", help="fine-tune these weights")
    parser.add_argument(
        "--expected-per-micrograph",
        type=float,
        metavar="N",
        help="particles per micrograph when the picks are a sample (default: all are picked)",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (0)")
    parser.add_argument("--threads", type=int, metavar="T", help="torch CPU threads")


def _mask_centres(path: Path, shape: tuple[int, ...], diameter: float) -> Any:
    import numpy as np

    from causalscope.daemon.formats.coordinates import read_micrograph
    from causalscope.models.picking.discs import disc_centres, mask_at

    mask, _ = read_micrograph(path)
    zoom = (shape[0] / mask.shape[0], shape[1] / mask.shape[1])
    if abs(zoom[0] - zoom[1]) > 0.01 * zoom[0]:
        raise InputError(
            "Mask does not fit its micrograph",
            f"{path}: mask {mask.shape} is not proportional to the micrograph {shape}",
            path=path,
        )
    inside = mask_at(mask, (shape[0], shape[1])) > 127
    return np.asarray(disc_centres(inside, radius_px=diameter / 2))


def training_items(args: argparse.Namespace) -> list[Any]:
    """The micrographs, their picks and diameters, checked."""
    from causalscope.daemon.formats.coordinates import read_coordinates, read_micrograph
    from causalscope.daemon.picker_training import TrainingItem, check_item

    labels = args.coords or args.masks or []
    if args.coords and len(args.coords) == 1:  # one file naming every micrograph
        labels = labels * len(args.micrographs)
    if len(labels) != len(args.micrographs):
        raise InputError(
            "Micrographs and labels differ in number",
            f"{len(args.micrographs)} micrographs but {len(labels)} --coords/--masks files",
        )
    items = []
    for index, (path, label) in enumerate(zip(args.micrographs, labels, strict=True)):
        image, apix = read_micrograph(path)
        diameter = diameter_px(args, path, apix, image.shape, index=index)
        if args.coords:
            xy = read_coordinates(label, micrograph=path, shape=image.shape)
            name = f"{path} with {label}"
        else:
            xy = _mask_centres(label, image.shape, diameter)
            name = f"{path} with mask {label}"
        expected = args.expected_per_micrograph
        if expected is not None and expected < len(xy):
            raise InputError(
                "Fewer particles expected than picked",
                f"{label}: {len(xy)} picks but --expected-per-micrograph {expected:g}",
                path=label,
            )
        item = TrainingItem(name, image, xy, diameter, n_expected=expected)
        check_item(item)
        items.append(item)
    return items


def run(args: argparse.Namespace) -> int:
    """Read, train, write the weights and the record."""
    import torch

    from causalscope.daemon.commands.pick import load_model
    from causalscope.daemon.commands.train_denoiser import _atomic_write
    from causalscope.daemon.picker_training import simulated_items, train_from_items
    from causalscope.daemon.session import software_version
    from causalscope.models.picking.learned import save_picker

    if args.steps < 1 or args.simulated < 0:
        raise InputError(
            "Bad training settings", f"--steps {args.steps}, --simulated {args.simulated}"
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    items = training_items(args)
    items += simulated_items(args.simulated, seed=1000 + args.seed)
    if not items:
        raise InputError(
            "Nothing to train on", "give micrographs with --coords/--masks or --simulated"
        )
    init = load_model(args.init) if args.init is not None else None
    model, record = train_from_items(items, steps=args.steps, seed=args.seed, init=init)
    data = save_picker(model)
    _atomic_write(args.out, data)
    record = {
        "weights": args.out.name,
        "bytes": len(data),
        "init": args.init.name if args.init is not None else "fresh",
        **record,
        "software_version": software_version(),
        "command": " ".join(["causalscope", *sys.argv[1:]]),
    }
    _atomic_write(args.out.with_suffix(".json"), (json.dumps(record, indent=1) + "\n").encode())
    print(json.dumps({"out": str(args.out), **record["training"]}), file=sys.stderr)
    return 0
