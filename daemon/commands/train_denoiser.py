"""Pretrain the Noise2Noise denoiser on simulated exposures and write its weights.

Simulates --n drift-free movies with the project's simulator (the built-in phantom with a
different shape per movie; dose, ice thickness, defocus, astigmatism, particle density and the
share of broken particles and aggregates drawn over typical ranges), sums the even and the odd
frames (exact half sums: nothing moves), trains the U-Net of models/denoise to map one half
sum to the other, and writes the weights (--out) and, beside them, a JSON record of the
training settings, the data, the losses, the date and the software version.

Example:
  causalscope train-denoiser --out models/data/n2n_default.pt --n 48 --size 768 \\
      --steps 8000 --threads 1
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: ranges of the simulated training exposures (log-uniform where marked)
DATA_RANGES: dict[str, Any] = {
    "dose_e_per_a2": [8.0, 60.0, "log-uniform"],
    "ice_thickness_nm": [12.0, 150.0, "log-uniform"],
    "defocus_um": [0.8, 3.0, "uniform"],
    "astigmatism_angstrom": [0.0, 1000.0, "uniform"],
    "particles_per_1024_squared": [5.0, 45.0, "uniform"],
    "broken_fraction": [0.0, 0.3, "uniform"],
    "aggregate_fraction": [0.0, 0.2, "uniform"],
    "bfactor_angstrom2": [10.0, 80.0, "uniform"],
}
#: ranges of the ``--bench-like-fraction`` of the movies: around the restoration bench's
#: settings (dose 10-40, ice 30-100 nm, defocus 1.5 um), never its seeds or its specimen
BENCH_LIKE_RANGES: dict[str, Any] = {
    "dose_e_per_a2": [8.0, 50.0, "log-uniform"],
    "ice_thickness_nm": [20.0, 120.0, "log-uniform"],
    "defocus_um": [1.2, 1.9, "uniform"],
    "astigmatism_angstrom": [0.0, 800.0, "uniform"],
    "particles_per_1024_squared": [15.0, 45.0, "uniform"],
    "broken_fraction": [0.0, 0.1, "uniform"],
    "aggregate_fraction": [0.0, 0.05, "uniform"],
    "bfactor_angstrom2": [10.0, 40.0, "uniform"],
}
_DESCRIBED = (
    "dose_e_per_a2",
    "ice_thickness_nm",
    "defocus_u_angstrom",
    "defocus_v_angstrom",
    "defocus_angle_deg",
    "n_particles",
    "seed",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the train-denoiser options."""
    parser.add_argument("--out", required=True, type=Path, metavar="FILE", help="weights (.pt)")
    parser.add_argument("--n", type=int, default=48, metavar="N", help="simulated movies (48)")
    parser.add_argument("--size", type=int, default=768, metavar="PX", help="movie size (768)")
    parser.add_argument("--frames", type=int, default=2, metavar="F", help="frames per movie (2)")
    parser.add_argument(
        "--steps", type=int, default=8000, metavar="S", help="training steps (8000)"
    )
    parser.add_argument("--crop-px", type=int, default=128, metavar="PX", help="crop size (128)")
    parser.add_argument("--batch", type=int, default=8, metavar="B", help="crops per step (8)")
    parser.add_argument("--lr", type=float, default=1e-3, metavar="LR", help="Adam rate (1e-3)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (0)")
    parser.add_argument(
        "--threads", type=int, default=None, metavar="T", help="torch CPU threads (default all)"
    )
    parser.add_argument(
        "--init", type=Path, default=None, metavar="FILE", help="start from these weights (.pt)"
    )
    parser.add_argument(
        "--bench-like-fraction",
        type=float,
        default=0.0,
        metavar="F",
        help="share of the movies drawn from BENCH_LIKE_RANGES, not DATA_RANGES (0)",
    )


def simulate_pairs(
    n: int, *, size: int, frames: int, seed: int, bench_like_fraction: float = 0.0
) -> tuple[list[tuple[Any, Any]], list[Any]]:
    """``n`` drift-free simulated movies: (even, odd) half sums and ``ExposureParameters``.

    The first movies, those with ``(i + 0.5) / n < bench_like_fraction``, draw from
    :data:`BENCH_LIKE_RANGES`, the others from :data:`DATA_RANGES`.
    """
    import numpy as np
    import torch

    from causalscope.models.simulate.exposure import ExposureParameters, simulate_exposure
    from causalscope.models.simulate.specimen import phantom_specimen

    rng = np.random.default_rng(seed)

    def log_uniform(lo: float, hi: float) -> float:
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))

    pairs: list[tuple[Any, Any]] = []
    described: list[Any] = []
    for i in range(n):
        r = BENCH_LIKE_RANGES if (i + 0.5) / n < bench_like_fraction else DATA_RANGES
        defocus = 1e4 * rng.uniform(*r["defocus_um"][:2])
        astig = rng.uniform(*r["astigmatism_angstrom"][:2])
        params = ExposureParameters(
            size_px=size,
            n_frames=frames,
            dose_e_per_a2=log_uniform(*r["dose_e_per_a2"][:2]),
            ice_thickness_nm=log_uniform(*r["ice_thickness_nm"][:2]),
            defocus_u_angstrom=defocus + astig / 2,
            defocus_v_angstrom=defocus - astig / 2,
            defocus_angle_deg=float(rng.uniform(0, 180)),
            bfactor_angstrom2=float(rng.uniform(*r["bfactor_angstrom2"][:2])),
            drift_total_px=0.0,
            drift_jitter_px=0.0,
            local_motion_px=0.0,
            intra_frame_blur=False,
            n_particles=int(rng.uniform(*r["particles_per_1024_squared"][:2]) * (size / 1024) ** 2),
            broken_fraction=float(rng.uniform(*r["broken_fraction"][:2])),
            aggregate_fraction=float(rng.uniform(*r["aggregate_fraction"][:2])),
            seed=int(rng.integers(1_000_000, 2_000_000)),
        )
        sim = simulate_exposure(params, specimen=phantom_specimen(seed=1 + i))
        movie = torch.from_numpy(sim.frames.astype(np.float32))
        pairs.append((movie[0::2].sum(0), movie[1::2].sum(0)))
        described.append(params)
    return pairs, described


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; these files ship with the package
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _init_record(init: Path | None) -> dict[str, Any] | None:
    """How the --init weights were made: their JSON record's training and command, if any."""
    if init is None:
        return None
    try:
        record = json.loads(init.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    keys = ("training", "command", "date", "software_version")
    return {k: record[k] for k in keys if k in record}


def run(args: argparse.Namespace) -> int:
    """Simulate, train, write the weights and the training record."""
    _check_arguments(args)
    import torch

    from causalscope.models.denoise import save_weights, train_noise2noise

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    pairs, described = simulate_pairs(
        args.n,
        size=args.size,
        frames=args.frames,
        seed=args.seed,
        bench_like_fraction=args.bench_like_fraction,
    )
    simulated_s = time.perf_counter() - started
    print(f"simulated {args.n} movies in {simulated_s:.0f} s", file=sys.stderr)
    model = _initial_model(args.init)
    report = train_noise2noise(
        model,
        pairs,
        steps=args.steps,
        crop_px=args.crop_px,
        lr=args.lr,
        seed=args.seed,
        batch=args.batch,
    )
    trained_s = time.perf_counter() - started - simulated_s
    data = save_weights(model)
    _atomic_write(args.out, data)
    record = _training_record(
        args, model, len(data), report, described, simulated_s=simulated_s, trained_s=trained_s
    )
    _atomic_write(args.out.with_suffix(".json"), (json.dumps(record, indent=1) + "\n").encode())
    print(
        json.dumps({"out": str(args.out), "final_loss": record["training"]["final_loss"]}),
        file=sys.stderr,
    )
    return 0


def _check_arguments(args: argparse.Namespace) -> None:
    from causalscope.models.errors import InputError

    if args.n < 1 or args.frames < 2 or args.steps < 1:
        raise InputError(
            "Bad training settings",
            f"need --n >= 1, --frames >= 2, --steps >= 1; got {args.n}, {args.frames}, "
            f"{args.steps}",
        )
    if args.size < args.crop_px:
        raise InputError("Bad training settings", f"--size {args.size} < --crop-px {args.crop_px}")
    if not 0.0 <= args.bench_like_fraction <= 1.0:
        raise InputError(
            "Bad training settings",
            f"--bench-like-fraction {args.bench_like_fraction} not in [0, 1]",
        )


def _initial_model(init: Path | None) -> Any:
    """A fresh U-Net, or the ``--init`` weights."""
    from causalscope.models.denoise import UNet, load_weights
    from causalscope.models.errors import InputError

    if init is None:
        return UNet()
    try:
        return load_weights(init.read_bytes())
    except (OSError, ValueError) as error:
        raise InputError("Cannot read --init weights", f"{init}: {error}") from error


def _training_record(
    args: argparse.Namespace,
    model: Any,
    n_bytes: int,
    report: Any,
    described: list[Any],
    *,
    simulated_s: float,
    trained_s: float,
) -> dict[str, Any]:
    """The JSON record written beside the weights: model, training, data, date, version."""
    import torch

    from causalscope.daemon.session import software_version
    from causalscope.models.denoise import parameter_count

    return {
        "weights": args.out.name,
        "model": {**model.config(), "parameters": parameter_count(model), "bytes": n_bytes},
        "training": {
            "steps": args.steps,
            "crop_px": args.crop_px,
            "batch": args.batch,
            "lr": args.lr,
            "schedule": "Adam, cosine decay to lr / 10",
            "init": args.init.name if args.init is not None else "fresh (identity residual)",
            "init_record": _init_record(args.init),
            "seed": args.seed,
            "threads": torch.get_num_threads(),
            "loss": "MSE, even -> odd and odd -> even, robust-normalised half sums",
            "first_loss": round(report.first_loss, 5),
            "final_loss": round(report.final_loss, 5),
            "simulation_s": round(simulated_s, 1),
            "training_s": round(trained_s, 1),
        },
        "data": {
            "movies": args.n,
            "size_px": args.size,
            "frames": args.frames,
            "pixel_size_angstrom": 1.0,
            "voltage_kv": 300.0,
            "specimen": "built-in phantom, phantom_specimen(seed=1..n)",
            "half_sums": "even and odd frames summed (drift-free, exact)",
            "ranges": DATA_RANGES,
            "bench_like_fraction": args.bench_like_fraction,
            "bench_like_ranges": BENCH_LIKE_RANGES,
            "exposures": [
                {key: round(float(getattr(p, key)), 2) for key in _DESCRIBED} for p in described
            ],
        },
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "software_version": software_version(),
        # the subcommand and its options, not the path this machine ran it from
        "command": " ".join(["causalscope", *sys.argv[1:]]),
    }
