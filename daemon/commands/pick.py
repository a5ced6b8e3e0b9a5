"""Pick particles in micrographs with the learned picker; one coordinate STAR and CSV each.

Reads MRC, TIFF, PNG and JPEG micrographs (grey; a movie's frames are summed), brings each to
the picker's canonical scale from the particle diameter, and writes ``DIR/<name>.star`` (a
RELION coordinate file: rlnCoordinateX/Y and rlnAutopickFigureOfMerit, the pick's
probability) and ``DIR/<name>.csv``. Picks are at least half a diameter apart and from the
border, with probability >= --threshold (auto: the cut stored with the model, half the best F1
on labelled micrographs held out from its training, lowered on a micrograph whose
own peaks show many more particles than it keeps; the cut used is printed). A micrograph
without picks gets a warning naming its diameter in pixels and where the pixel size came from.

--exclude drops the picks where not to pick, as the live path does
(:mod:`models.picking.exclusion`): carbon film, ice balls and aggregates (the local mean of
counts more than 3 % under the ice's), cracks and empty holes (more than 3 % over it, their
background measured apart from the ice's) and the border. It reads relative changes of the
counts, so it needs a sum of counts (MRC or TIFF, not normalised: a mean above the spread) and
the pixel size; the area fraction per reason and the picks dropped are printed.

Example:
  causalscope pick mics/*.mrc --diameter-angstrom 150 --out picks/
  causalscope pick mic.png --diameter-px 56 --out picks/ --weights my_picker.pt
  causalscope pick sums/*.mrc --diameter-angstrom 150 --exclude --out picks/
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from causalscope.daemon.commands._picker_args import (
    add_diameter_arguments,
    diameter_px,
    pixel_size_source,
)
from causalscope.models.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the pick options."""
    parser.add_argument("micrographs", nargs="+", type=Path, metavar="MICROGRAPH")
    add_diameter_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument(
        "--weights", type=Path, metavar="FILE", help="picker weights (default: shipped model)"
    )
    parser.add_argument(
        "--threshold",
        default="auto",
        metavar="P",
        help="probability cut, or auto: the model's stored cut (half its best held-out F1), "
        "checked against each micrograph's own peaks (auto)",
    )
    parser.add_argument(
        "--exclude",
        action="store_true",
        help="drop picks on carbon, ice contamination, cracks and the border (needs sums of "
        "counts, MRC or TIFF, and the pixel size)",
    )
    parser.add_argument("--threads", type=int, metavar="T", help="torch CPU threads")


def _threshold(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise InputError("Bad threshold", f"--threshold {text!r} is not auto or in [0, 1]")
    return value


def load_model(weights: Path | None) -> object:
    """The ``--weights`` picker, or the shipped one."""
    from causalscope.models.picking.learned import default_picker, load_picker

    if weights is None:
        return default_picker()
    try:
        return load_picker(weights.read_bytes())
    except (OSError, ValueError) as error:
        raise InputError(
            "Cannot read picker weights", f"{weights}: {error}", path=weights
        ) from None


def exclusion(
    args: argparse.Namespace, path: Path, image: Any, header_apix: float | None, diameter: float
) -> Any:
    """The micrograph's exclusion mask (:func:`~models.picking.exclusion.exclusion_mask`), or
    an :class:`InputError` naming the file when it cannot be judged: no pixel size, an 8-bit
    picture, or values that are not counts (a mean not above the spread, as a normalised image
    has; Poisson counts of ``m`` per pixel have a spread of ``sqrt(m)``)."""
    from causalscope.config import PickingSettings
    from causalscope.models.picking.exclusion import exclusion_mask

    apix = args.pixel_size_angstrom or header_apix
    if not apix or apix <= 0:
        raise InputError(
            "No pixel size for --exclude",
            f"{path} has no pixel size in its header; give --pixel-size-angstrom",
            path=path,
        )
    if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
        raise InputError(
            "--exclude needs counts",
            f"{path} is an 8-bit picture, whose grey levels are not counts; give the MRC or "
            "TIFF sum",
            path=path,
        )
    mean, spread = float(image.mean()), float(image.std())
    if not mean > spread:
        raise InputError(
            "--exclude needs counts",
            f"{path} has mean {mean:.4g} and spread {spread:.4g}; a sum of a few counts per "
            "pixel or more has a mean above its spread (a normalised image cannot be judged)",
            path=path,
        )
    contrast = PickingSettings().exclude_contrast
    return exclusion_mask(
        image,
        pixel_size_angstrom=float(apix),
        particle_diameter_angstrom=diameter * float(apix),
        dense_fraction=contrast,
        thin_fraction=contrast,
    )


def run(args: argparse.Namespace) -> int:
    """Pick every micrograph and write its STAR and CSV files."""
    import torch

    from causalscope.daemon.formats.coordinates import (
        read_micrograph,
        write_coordinates_csv,
        write_coordinates_star,
    )
    from causalscope.models.picking.learned import pick_learned

    threshold = _threshold(args.threshold)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = None  # loaded once the first micrograph has passed its checks
    for index, path in enumerate(args.micrographs):
        started = time.perf_counter()
        image, apix = read_micrograph(path)
        diameter = diameter_px(args, path, apix, image.shape, index=index)
        tensor = torch.from_numpy(image)
        mask = exclusion(args, path, tensor, apix, diameter) if args.exclude else None
        if model is None:
            model = load_model(args.weights)
        picks = pick_learned(
            tensor,
            model,  # type: ignore[arg-type]
            diameter_px=diameter,
            threshold=threshold,
            counted=None if mask is None else mask.keeps,
            ice_free=None if mask is None else mask.thin,
        )
        excluded = 0
        if mask is not None:
            picks, excluded = mask.drop(tensor, picks, diameter_px=diameter)
        if not len(picks):
            print(
                f"warning: {path}: no particle picked at a diameter of {diameter:.1f} px; check "
                "--diameter-angstrom or --diameter-px and the pixel size "
                f"({pixel_size_source(args, apix)})",
                file=sys.stderr,
            )
        xy, scores = picks.xy_px.numpy(), picks.scores.numpy()
        star = write_coordinates_star(args.out / f"{path.stem}.star", xy, scores)
        write_coordinates_csv(args.out / f"{path.stem}.csv", xy, scores)
        summary = {
            "micrograph": str(path),
            "picks": len(picks),
            "threshold": None if picks.threshold is None else round(picks.threshold, 4),
            "diameter_px": round(diameter, 2),
            **(
                {}
                if mask is None
                else {
                    "excluded_fractions": {k: round(v, 4) for k, v in mask.fractions.items()},
                    "picks_excluded": excluded,
                }
            ),
            "star": str(star),
            "seconds": round(time.perf_counter() - started, 3),
        }
        print(json.dumps(summary), file=sys.stderr)
    return 0
