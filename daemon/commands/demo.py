"""Simulate a short session at a realistic pace and report what was made.

The demo runs the fake microscope into a temporary folder (or --out), one movie every few
seconds, exactly as a detector would write them, then summarises the session's truth. It needs
no data files and no GPU.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the demo options."""
    parser.add_argument("--out", type=Path, metavar="DIR", help="keep the session here")
    parser.add_argument("--n", type=int, default=8, metavar="N", help="movies (default 8)")
    parser.add_argument("--size", type=int, default=1024, metavar="PX", help="movie size")
    parser.add_argument("--frames", type=int, default=20, metavar="F", help="frames per movie")
    parser.add_argument(
        "--rate",
        type=float,
        default=4.0,
        metavar="SECONDS",
        help="one movie every SECONDS (default 4)",
    )
    parser.add_argument("--seed", type=int, default=1, metavar="S", help="random seed")


def run(args: argparse.Namespace) -> int:
    """Simulate the session and print its summary."""
    from config import load_settings
    from daemon.simulator import SimulationRequest, run_simulation

    # two shots in each of two holes per square: eight exposures visit two squares, four holes
    overrides = {
        "simulation": {
            "size_px": args.size,
            "n_frames": args.frames,
            "exposures_per_hole": 2,
            "holes_per_square": 2,
        }
    }
    settings = load_settings(args.config, args.preset, overrides)
    with tempfile.TemporaryDirectory(prefix="causalscope-demo-") as tmp:
        out = args.out or Path(tmp) / "session"
        print(
            f"causalscope demo: simulating {args.n} exposures into {out} "
            f"(one every {args.rate:g} s)",
            flush=True,
        )

        request = SimulationRequest(
            out_dir=out, n_exposures=args.n, seed=args.seed, rate_s=args.rate
        )
        summary = run_simulation(
            settings,
            request,
            on_movie=lambda movie, total: print(f"  {movie.line(total)}", flush=True),
        )
        print(summary.describe())
    return 0
