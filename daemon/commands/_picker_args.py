"""Options shared by ``pick`` and ``train-picker``: the particle diameter in pixels."""

from __future__ import annotations

import argparse
from pathlib import Path

from causalscope.models.errors import InputError


def add_diameter_arguments(parser: argparse.ArgumentParser) -> None:
    """``--diameter-px`` or ``--diameter-angstrom`` (with ``--pixel-size-angstrom``)."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--diameter-px",
        type=float,
        nargs="+",
        metavar="PX",
        help="particle diameter (px): one for all micrographs, or one each",
    )
    group.add_argument(
        "--diameter-angstrom",
        type=float,
        nargs="+",
        metavar="A",
        help="particle diameter (Angstrom): one for all micrographs, or one each",
    )
    parser.add_argument(
        "--pixel-size-angstrom",
        type=float,
        metavar="A",
        help="with --diameter-angstrom: pixel size (default: each file's header)",
    )


def _given(values: list[float], index: int, n: int, flag: str) -> float:
    if len(values) not in (1, n):
        raise InputError(
            "Diameters and micrographs differ in number",
            f"{flag} has {len(values)} values for {n} micrographs; give one, or one each",
        )
    return float(values[0] if len(values) == 1 else values[index])


def diameter_px(
    args: argparse.Namespace,
    path: Path,
    header_apix: float | None,
    shape: tuple[int, ...],
    *,
    index: int = 0,
) -> float:
    """The diameter in pixels of micrograph number ``index`` (``path``); checks it against the
    image size."""
    n = len(args.micrographs)
    if args.diameter_px is not None:
        value = _given(args.diameter_px, index, n, "--diameter-px")
    else:
        apix = args.pixel_size_angstrom or header_apix
        if not apix or apix <= 0:
            raise InputError(
                "No pixel size",
                f"{path} has no pixel size in its header; give --pixel-size-angstrom or "
                "--diameter-px",
                path=path,
            )
        value = _given(args.diameter_angstrom, index, n, "--diameter-angstrom") / apix
    if not 4.0 <= value <= min(shape):
        raise InputError(
            "Bad particle diameter",
            f"{path}: diameter {value:g} px must lie in [4, {min(shape)}] px for its "
            f"{shape[1]} x {shape[0]} image",
            path=path,
        )
    return value


def pixel_size_source(args: argparse.Namespace, header_apix: float | None) -> str:
    """Where the pixel size behind :func:`diameter_px` came from (for messages)."""
    if args.diameter_px is not None:
        return "not used: --diameter-px"
    if args.pixel_size_angstrom:
        return f"--pixel-size-angstrom {args.pixel_size_angstrom:g}"
    return f"{header_apix:g} A/px from the file's header"
