"""Triage micrographs from the image alone: empty, ice_only, crystalline_ice, contaminated, usable.

Each image (MRC, TIFF, PNG or JPEG; a movie's frames are summed) gets the class with the
highest probability, a probability per class and a one-line reason in physical terms. The
tests, on statistics free of gain, offset and bit depth (see models/triage): power above the
white shot-noise floor (none: an empty hole), Bragg spots at 3.4-4.0 A (crystalline ice, only
where Nyquist reaches them), large dark or bright departures of the local mean from the ice
level (ice balls, aggregates, carbon, cracks) or a directional loss of signal (drift), and
localised 30-200 A bodies (particles; without them: ice only).

The pixel size comes from --pixel-size, else from the MRC/TIFF header; PNG and JPEG have
none, so --pixel-size is required for them (a downsampled file keeps its original header:
give the binned pixel size).

Example:
  causalscope score mic_0001.mrc mic_0002.mrc
  causalscope score --pixel-size 5.36 thumbnails/*.png --json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from causalscope.models.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the score options."""
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="micrographs")
    parser.add_argument(
        "--pixel-size",
        type=float,
        metavar="A",
        help="pixel size in Angstrom (required for PNG/JPEG; default: the file's header)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def run(args: argparse.Namespace) -> int:
    """Triage every image and print one line per image."""
    from causalscope.daemon.formats.coordinates import read_micrograph
    from causalscope.models.triage import triage_micrograph

    if args.pixel_size is not None and not args.pixel_size > 0:
        raise InputError("Bad pixel size", f"--pixel-size {args.pixel_size:g} must be positive")
    for path in args.images:
        image, header_apix = read_micrograph(path)
        apix = args.pixel_size or header_apix
        if apix is None or not apix > 0:
            raise InputError(
                "No pixel size",
                f"{path} has no pixel size in a header ({header_apix}); give --pixel-size",
                path=path,
            )
        try:
            result = triage_micrograph(image, pixel_size_angstrom=float(apix))
        except ValueError as error:
            raise InputError("Cannot triage", f"{path}: {error}", path=path) from None
        if args.json:
            print(json.dumps({"file": str(path), "pixel_size_angstrom": apix, **result.to_dict()}))
        else:
            scores = " ".join(f"{k}={v:.2f}" for k, v in result.scores.items())
            print(f"{path}\t{result.label}\t{scores}\t{result.reason}")
    return 0
