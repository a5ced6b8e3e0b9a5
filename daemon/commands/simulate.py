"""Simulate a session: movies with known truth, as files or a ZeroMQ frame stream.

Writes movies (MRC, TIFF or EER), per-movie metadata (EPU XML or SerialEM .mdoc), a gain
reference with defects, a defect list and truth.jsonl (one JSON object per movie: every
generating parameter, the per-frame shifts and the particle positions). With --rate the
movies appear one every N seconds and each file grows while it is written, as a detector
writes it. With --zmq the frames are pushed to a receiver instead (see
daemon/frame_protocol.py for the message schema).

Example:
  causalscope simulate --out sim --n 5 --size 1024 --frames 20 --seed 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the simulate options."""
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument("--n", type=int, default=5, metavar="N", help="movies (default 5)")
    parser.add_argument("--size", type=int, metavar="PX", help="width and height in pixels")
    parser.add_argument("--frames", type=int, metavar="F", help="frames per movie")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed")
    parser.add_argument("--dose", type=float, metavar="E_PER_A2", help="total dose, e/A^2")
    parser.add_argument(
        "--format", choices=("mrc", "tiff", "eer"), default="tiff", help="movie format"
    )
    parser.add_argument(
        "--metadata", choices=("epu", "mdoc", "none"), default="epu", help="metadata layout"
    )
    parser.add_argument(
        "--rate", type=float, metavar="SECONDS", help="write one movie every SECONDS, slowly"
    )
    parser.add_argument(
        "--structure", metavar="PDB_OR_MAP", help="PDB/mmCIF model or MRC map (default: phantom)"
    )
    parser.add_argument(
        "--zmq", metavar="tcp://HOST:PORT", help="push frames to this receiver instead of files"
    )


def simulation_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Settings overrides from the command line (only what was given)."""
    sim: dict[str, Any] = {}
    for flag, key in (
        ("size", "size_px"),
        ("frames", "n_frames"),
        ("dose", "dose_e_per_a2"),
        ("structure", "structure"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            sim[key] = value
    return {"simulation": sim} if sim else {}


def run(args: argparse.Namespace) -> int:
    """Simulate and print one line per movie, then a summary."""
    from causalscope.config import load_settings
    from causalscope.daemon.simulator import SimulationRequest, run_simulation

    settings = load_settings(args.config, args.preset, simulation_overrides(args))
    request = SimulationRequest(
        out_dir=args.out,
        n_exposures=args.n,
        seed=args.seed,
        movie_format=args.format,
        metadata_format=args.metadata,
        rate_s=args.rate,
        zmq_address=args.zmq,
    )

    summary = run_simulation(
        settings, request, on_movie=lambda movie, total: print(movie.line(total), flush=True)
    )
    print(summary.describe())
    sys.stdout.flush()
    return 0
