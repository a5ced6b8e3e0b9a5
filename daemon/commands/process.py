"""Process movies: motion correction, CTF estimation and the sanity gate.

Metadata come from --metadata, else from EPU XML or a SerialEM .mdoc beside the movie, else
from the configured microscope. Gain reference and defects come from the detector settings
(e.g. CAUSALSCOPE_DETECTOR__GAIN_REFERENCE=gain.mrc); without a configured gain, a gain
reference beside the movie or in one of the three folders above it (watcher.gain_patterns, as
EPU and SerialEM write them) is used when its shape fits, and the choice is printed. Micrographs
(aligned, dose-weighted, even/odd halves) go to OUT/micrographs, the trajectory to OUT/motion
as a STAR file.

Several movies are processed in turn by one worker (its models loaded once); a movie that
cannot be read is reported on stderr and the others go on. With --json, one record per line.

Exit status: 0 when every exposure passes (or passes with warnings), 1 when the sanity gate
fails one (the reasons are printed), 2 for unusable input (a missing or corrupt file).

Example:
  causalscope process FoilHole_123_Data_456_fractions.tiff --out processed --json
  causalscope process GridSquare_*/Data/FoilHole_*_fractions.tiff --out processed
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from causalscope.actors.exposure import DetectorCalibration, ExposureWorker
    from causalscope.config import Settings
    from causalscope.config.acquisition import WatcherSettings
    from causalscope.models.records import ExposureRecord


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the process options."""
    parser.add_argument(
        "movies",
        nargs="+",
        type=Path,
        metavar="MOVIE",
        help="movies (.mrc, .mrcs, .tif, .tiff, .eer), processed in turn",
    )
    parser.add_argument(
        "--metadata",
        type=Path,
        metavar="FILE",
        help="EPU .xml or SerialEM .mdoc of the movie (with one movie only)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("processed"), metavar="DIR", help="output folder"
    )
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], help="override processing.device"
    )
    parser.add_argument("--json", action="store_true", help="print the record as JSON")


def run(args: argparse.Namespace) -> int:
    """Process the movies and print their records."""
    from causalscope.actors._memory import keep_freed_memory

    # before any other thread allocates (some libraries start threads when imported, and the
    # movie is decoded on threads): a thread that got a heap of its own keeps it, and others
    # are handed those heaps again (4096^2 x 40 motion: 62 s with the reading threads' heaps,
    # 44 s with one heap)
    keep_freed_memory()

    from causalscope.config import load_settings
    from causalscope.models.errors import CausalscopeError, InputError

    if args.metadata is not None and len(args.movies) > 1:
        raise InputError(
            "--metadata names one movie's metadata",
            f"{len(args.movies)} movies were given with --metadata {args.metadata}; leave it "
            "out to read each movie's own EPU XML or .mdoc",
            path=args.metadata,
        )
    overrides = {"processing": {"device": args.device}} if args.device else {}
    settings = load_settings(args.config, args.preset, overrides)
    workers: dict[tuple[int, int, int], ExposureWorker] = {}
    status = 0
    for path in args.movies:
        try:
            record = _process(path, args, settings, workers)
        except CausalscopeError as error:
            if len(args.movies) == 1:
                raise
            from causalscope.daemon.cli import print_error

            print_error(error)
            status = 2
            continue
        print(record.model_dump_json(exclude_none=True) if args.json else describe(record))
        if record.status == "fail":
            status = max(status, 1)
    return status


def _process(
    path: Path,
    args: argparse.Namespace,
    settings: Settings,
    workers: dict[tuple[int, int, int], ExposureWorker],
) -> ExposureRecord:
    """One movie's record, by the worker for its frame size (made on its first movie)."""
    from causalscope.actors.exposure import ExposureWorker
    from causalscope.daemon.exposures import load_calibration, load_movie

    started = time.perf_counter()
    movie = load_movie(path, settings, metadata_path=args.metadata)
    read_s = time.perf_counter() - started
    shape = (int(movie.frames.shape[-2]), int(movie.frames.shape[-1]))
    key = (*shape, movie.upsampling)
    if key not in workers:
        if settings.detector.gain_reference is None:
            calibration = _calibration_beside(path, settings, shape, movie.upsampling)
        else:
            calibration = load_calibration(settings, shape, upsampling=movie.upsampling)
        workers[key] = ExposureWorker(
            microscope=settings.microscope,
            detector=settings.detector,
            processing=settings.processing,
            output_dir=args.out,
            calibration=calibration,
        )
    record = workers[key].process(
        movie.frames,
        exposure_id=path.stem,
        movie_path=str(path),
        metadata=movie.metadata,
        pixel_size_angstrom=movie.pixel_size_angstrom,
    )
    return record.model_copy(update={"timings_s": {"read": round(read_s, 4), **record.timings_s}})


def gain_beside(movie: Path, watcher: WatcherSettings, *, levels: int = 4) -> Path | None:
    """The nearest file named like a gain reference (``watcher.gain_patterns``, as the watcher
    reads them) in the movie's folder or the ``levels - 1`` folders above it (EPU writes movies
    three folders below the session folder, where the gain is), or None; the first by name
    where a folder has several."""
    folder = movie.resolve().parent
    for _ in range(levels):
        found = sorted(
            path
            for path in folder.iterdir()
            if path.is_file() and watcher.file_kind(path.name) == "gain"
        )
        if found:
            return found[0]
        if folder.parent == folder:
            break
        folder = folder.parent
    return None


def _calibration_beside(
    movie: Path, settings: Settings, shape: tuple[int, int], upsampling: int
) -> DetectorCalibration:
    """The calibration with the gain reference found beside ``movie`` (said on stderr), or
    without a gain when there is none or it does not fit the frames (said too)."""
    from causalscope.daemon.exposures import load_calibration
    from causalscope.models.errors import FormatError

    found = gain_beside(movie, settings.watcher)
    if found is None:
        print(
            f"gain: none configured (detector.gain_reference) or found beside {movie.name}; "
            "the counts are not gain-corrected",
            file=sys.stderr,
        )
        return load_calibration(settings, shape, upsampling=upsampling)
    detector = settings.detector.model_copy(update={"gain_reference": found})
    try:
        calibration = load_calibration(
            settings.model_copy(update={"detector": detector}), shape, upsampling=upsampling
        )
    except FormatError as error:
        print(f"gain: {found} found beside the movie is not used: {error}", file=sys.stderr)
        return load_calibration(settings, shape, upsampling=upsampling)
    print(
        f"gain: {found}, found beside the movie (set detector.gain_reference to choose one)",
        file=sys.stderr,
    )
    return calibration


def describe(record: ExposureRecord) -> str:
    """A few lines a tired operator can read: status, reasons, motion, CTF, files, time."""
    lines = [f"{record.movie_path}: {record.status.upper()}"]
    lines += [f"  {reason}" for reason in record.reasons]
    motion = record.motion
    if motion is not None:
        local = (
            f", local RMS {motion.local_motion_rms_px:.2f} px"
            if motion.local_motion_rms_px is not None
            else ""
        )
        lines.append(
            f"  motion: {motion.total_drift_px:.2f} px total drift{local}; accumulated "
            f"{motion.accumulated_motion_total_angstrom:.2f} A (early "
            f"{motion.accumulated_motion_early_angstrom:.2f}, late "
            f"{motion.accumulated_motion_late_angstrom:.2f})"
        )
        if motion.measured_dose_e_per_a2 is not None:
            lines.append(
                f"  dose: {motion.measured_dose_e_per_a2:.2f} e/A^2 measured"
                + (
                    f", {record.dose_e_per_a2:.2f} e/A^2 used"
                    if record.dose_e_per_a2 is not None
                    else ""
                )
            )
    ctf = record.ctf
    if ctf is not None:
        sigma = f" +- {ctf.defocus_sigma_angstrom:.0f}" if ctf.defocus_sigma_angstrom else ""
        ice = (
            f"; ice {ctf.ice_thickness_nm:.0f}"
            + (f" +- {ctf.ice_thickness_sigma_nm:.0f}" if ctf.ice_thickness_sigma_nm else "")
            + " nm"
            if ctf.ice_thickness_nm is not None
            else ""
        )
        lines.append(
            f"  ctf: defocus {ctf.defocus_angstrom / 1e4:.4f} um{sigma} A "
            f"(U {ctf.defocus_u_angstrom:.0f} A, V {ctf.defocus_v_angstrom:.0f} A, angle "
            f"{ctf.defocus_angle_deg:.1f} deg); fit to {_resolution(ctf.fit_resolution_angstrom)}, "
            f"merit {ctf.figure_of_merit:.3f}{ice}"
        )
    for kind, path in record.outputs.items():
        lines.append(f"  {kind}: {path}")
    total = sum(v for k, v in record.timings_s.items() if "." not in k)
    stages = ", ".join(f"{k} {v:.2f}" for k, v in record.timings_s.items() if "." not in k)
    lines.append(f"  time: {total:.2f} s ({stages})")
    return "\n".join(lines)


def _resolution(value: float | None) -> str:
    return "no resolution" if value is None else f"{value:.2f} A"
