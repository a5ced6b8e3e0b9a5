"""Show what a movie, gain reference or metadata file holds, and whether it is complete.

Movies (.mrc, .mrcs, .tif, .tiff, .eer) are checked from their header alone: frames, size,
dtype, pixel size, and whether the file holds all the bytes its header promises (a file still
being written, or truncated, is reported as an error). EPU .xml and SerialEM .mdoc files are
parsed into the values causalscope uses.

Example:
  causalscope inspect FoilHole_123_Data_456_7_20260101_120000_fractions.tiff
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from causalscope.models.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the inspect options."""
    parser.add_argument("path", type=Path, nargs="+", help="movie or metadata files")
    parser.add_argument("--json", action="store_true", help="one JSON object per file")


def describe(path: Path) -> dict[str, Any]:
    """What the file holds, as a JSON-able dict; FormatError/InputError when it is unusable."""
    from causalscope.daemon import formats

    if not path.exists():
        raise InputError("File not found", f"{path} does not exist", path=path)
    suffix = path.suffix.lower()
    if suffix in formats.MOVIE_SUFFIXES:
        info = formats.check_complete(path)
        out = dataclasses.asdict(info)
        out["path"] = str(info.path)
        out["complete"] = True
        return out
    if suffix == ".xml":
        return {"path": str(path), "metadata": [_jsonable(formats.read_epu_xml(path))]}
    if suffix == ".mdoc":
        return {"path": str(path), "metadata": [_jsonable(m) for m in formats.read_mdoc(path)]}
    known = ", ".join(sorted({*formats.MOVIE_SUFFIXES, ".xml", ".mdoc"}))
    raise InputError("Unknown file type", f"{path}: suffix {suffix!r} is not one of {known}")


def _jsonable(record: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(record.model_dump_json(exclude_none=True))
    return data


def run(args: argparse.Namespace) -> int:
    """Print each file's description."""
    for path in args.path:
        info = describe(path)
        if args.json:
            print(json.dumps(info))
            continue
        print(f"{path}:")
        if "metadata" in info:
            for record in info["metadata"]:
                for key, value in record.items():
                    if key not in {"source_path", "extra"}:
                        print(f"  {key}: {value}")
        else:
            apix = info["pixel_size_angstrom"]
            pixel = "no pixel size in header" if apix is None else f"{apix:g} A/px"
            print(
                f"  {info['format']} movie, {info['n_frames']} frames of {info['width_px']} x "
                f"{info['height_px']} px, {info['dtype']}, {pixel}, complete "
                f"({info['bytes_on_disk']} bytes)"
            )
    return 0
