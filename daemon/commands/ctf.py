"""Estimate the CTF of one micrograph or power spectrum (defocus, astigmatism, ice, fit).

The input is an MRC (or TIFF) image: a micrograph (a movie's frames are summed), or a power
spectrum with its origin at the centre, as RELION and CTFFIND write them. A power spectrum is
recognised by its exact centrosymmetry, or declared with --power-spectrum. The pixel size comes
from --pixel-size-angstrom, else from the file's header.

Example:
  causalscope ctf micrograph.mrc --voltage-kv 300 --spherical-aberration-mm 2.7 \
      --amplitude-contrast 0.07
  causalscope ctf movie_PS.mrc --voltage-kv 200 --cs-mm 1.4 --amplitude-contrast 0.1 --json
  (--cs-mm is short for --spherical-aberration-mm)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Literal

from causalscope.models.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ctf options."""
    parser.add_argument("image", type=Path, help="micrograph, movie or power spectrum (MRC/TIFF)")
    parser.add_argument("--voltage-kv", type=float, required=True, metavar="KV")
    parser.add_argument(
        "--spherical-aberration-mm", "--cs-mm", type=float, required=True, metavar="MM"
    )
    parser.add_argument("--amplitude-contrast", type=float, required=True, metavar="Q")
    parser.add_argument("--pixel-size-angstrom", type=float, metavar="A", help="default: header")
    parser.add_argument(
        "--power-spectrum", action="store_true", help="the input is a centred power spectrum"
    )
    parser.add_argument("--defocus-min-um", type=float, metavar="UM", help="search from")
    parser.add_argument("--defocus-max-um", type=float, metavar="UM", help="search to")
    parser.add_argument("--min-resolution-angstrom", type=float, metavar="A", help="fit from")
    parser.add_argument("--max-resolution-angstrom", type=float, metavar="A", help="fit to")
    parser.add_argument("--box-px", type=int, metavar="PX", help="periodogram tile size")
    parser.add_argument("--phase-shift", action="store_true", help="fit a phase-plate shift")
    parser.add_argument(
        "--counts",
        action="store_true",
        help="pixels are gain-corrected electron counts (Poisson): their mean is the noise floor, "
        "which enables the ice-thickness estimate",
    )
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")


def _check_optics(args: argparse.Namespace) -> None:
    if not 60 <= args.voltage_kv <= 400:
        hint = " (was it given in V?)" if args.voltage_kv > 1000 else ""
        raise InputError(
            "Implausible voltage", f"--voltage-kv {args.voltage_kv:g} is not 60-400 kV{hint}"
        )
    if not 0 <= args.spherical_aberration_mm <= 10:
        raise InputError(
            "Implausible Cs",
            f"--spherical-aberration-mm {args.spherical_aberration_mm:g} is not 0-10 mm",
        )
    if not 0 <= args.amplitude_contrast < 1:
        raise InputError(
            "Implausible amplitude contrast",
            f"--amplitude-contrast {args.amplitude_contrast:g} must lie in [0, 1)",
        )


def read_image(path: Path) -> tuple[Any, float | None]:
    """A 2D float32 image (movies summed) and the header's pixel size."""
    import numpy as np

    from causalscope.daemon import formats

    if not path.exists():
        raise InputError("File not found", f"{path} does not exist", path=path)
    frames = formats.read_movie(path)
    apix = formats.movie_info(path).pixel_size_angstrom
    image = frames.astype(np.float32).sum(axis=0) if frames.shape[0] > 1 else frames[0]
    return np.asarray(image, dtype=np.float32), apix


def run(args: argparse.Namespace) -> int:
    """Fit and print the CTF."""
    import torch

    from causalscope.config import load_settings
    from causalscope.models.ctf_estimation import estimate_ctf, looks_like_power_spectrum

    _check_optics(args)
    settings = load_settings(args.config, args.preset, {})
    defaults = settings.processing.ctf
    image, header_apix = read_image(args.image)
    apix = args.pixel_size_angstrom or header_apix
    if apix is None or apix <= 0:
        raise InputError(
            "No pixel size",
            f"{args.image} has no pixel size in its header; give --pixel-size-angstrom",
            path=args.image,
        )
    is_ps = args.power_spectrum or looks_like_power_spectrum(image)
    box: int | Literal["auto"] = args.box_px or defaults.box_px
    if is_ps and box == "auto":
        box = 512  # a given spectrum has its own size; the tile size is not used
    elif not is_ps and box != "auto":
        box = min(box, min(image.shape) // 2 * 2)
    try:
        estimate = estimate_ctf(
            torch.from_numpy(image),
            pixel_size_angstrom=apix,
            voltage_kv=args.voltage_kv,
            spherical_aberration_mm=args.spherical_aberration_mm,
            amplitude_contrast=args.amplitude_contrast,
            is_power_spectrum=is_ps,
            box_px=box,
            min_resolution_angstrom=args.min_resolution_angstrom
            or defaults.min_resolution_angstrom,
            max_resolution_angstrom=args.max_resolution_angstrom
            or max(defaults.max_resolution_angstrom, 2.1 * apix),
            defocus_min_um=args.defocus_min_um
            if args.defocus_min_um is not None
            else defaults.defocus_min_um,
            defocus_max_um=args.defocus_max_um or defaults.defocus_max_um,
            estimate_phase_shift=args.phase_shift or defaults.estimate_phase_shift,
            noise_variance=float(image.mean()) if args.counts and not is_ps else None,
        )
    except ValueError as error:
        raise InputError("Cannot fit the CTF", f"{args.image}: {error}", path=args.image) from None
    result = {"path": str(args.image), "power_spectrum": is_ps, **estimate.to_dict()}
    if args.json:
        print(json.dumps(result))
    else:
        print(describe(result))
    return 0 if estimate.supported else 1


def describe(result: dict[str, Any]) -> str:
    """Human-readable summary of an estimate dict."""
    kind = "power spectrum" if result["power_spectrum"] else "micrograph"
    mean = 0.5 * (result["defocus_u_angstrom"] + result["defocus_v_angstrom"])
    lines = [
        f"{result['path']} ({kind}): " + ("supported fit" if result["supported"] else "NO FIT"),
        f"  defocus {mean:.0f} A (U {result['defocus_u_angstrom']:.0f}, V "
        f"{result['defocus_v_angstrom']:.0f}, angle {result['defocus_angle_deg']:.1f} deg)"
        + (
            f", sigma {result['defocus_sigma_angstrom']:.0f} A"
            if result.get("defocus_sigma_angstrom") is not None
            else ""
        ),
        f"  fit resolution {_resolution(result['fit_resolution_angstrom'])}, figure of merit "
        f"{result['figure_of_merit']:.3f}",
    ]
    if result.get("phase_shift_deg"):
        lines.append(f"  phase shift {result['phase_shift_deg']:.1f} deg")
    if result.get("ice_thickness_nm") is not None:
        sigma = result.get("ice_thickness_sigma_nm")
        lines.append(
            f"  ice {result['ice_thickness_nm']:.0f} nm"
            + (f" +- {sigma:.0f} nm" if sigma is not None else "")
        )
    lines += [f"  warning: {w}" for w in result.get("warnings", [])]
    return "\n".join(lines)


def _resolution(value: float | None) -> str:
    return "none" if value is None else f"{value:.2f} A"
