"""What each ``causalscope bench`` runs: the parsed options turned into one benchmark's call
(the benchmarks themselves are in :mod:`daemon.bench`; the options in
:mod:`daemon.commands.bench`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["BENCHES"]


def _report(args: argparse.Namespace) -> dict[str, Any]:
    from causalscope.daemon.bench.report import run_report_bench

    return run_report_bench(n=args.n or 1000)


def _motion(args: argparse.Namespace) -> dict[str, Any]:
    from causalscope.daemon.bench.motion import CASES, run_motion_bench
    from causalscope.models.errors import InputError

    cases = args.cases or list(CASES)
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise InputError("Unknown case", f"{unknown}; choose from {sorted(CASES)}")
    return run_motion_bench(
        cases=cases,
        seeds=args.seeds or [0],
        device=args.device,
        compare=args.compare,
        compete=args.compete,
    )


def _causal(args: argparse.Namespace) -> dict[str, Any]:
    from causalscope.daemon.bench.causal import run_causal_bench

    # --size: the image-simulated sessions of the Wiener comparison (default 1024 -> 512)
    return run_causal_bench(
        seeds=args.seeds or list(range(10)),
        update_n=10_000,
        wiener_size=512 if args.size == 1024 else args.size,
        wiener_n=args.n or 48,
    )


def _tui(args: argparse.Namespace) -> dict[str, Any]:
    from causalscope.daemon.bench.tui import run_tui_bench

    return run_tui_bench(n=args.n or 10_000)


def _serve(args: argparse.Namespace) -> dict[str, Any]:
    from causalscope.daemon.bench.serve import run_serve_bench
    from causalscope.models.errors import InputError

    if args.clients < 1 or args.seconds <= 0:
        raise InputError(
            "Invalid load",
            f"--clients must be >= 1 and --seconds > 0, got {args.clients}, {args.seconds:g}",
        )
    import contextlib
    import sys

    with contextlib.redirect_stdout(sys.stderr):  # Ray's and Serve's lines; the JSON alone out
        if args.live:
            from causalscope.daemon.bench.serve_live import run_live_serve_bench

            return run_live_serve_bench(
                clients=args.clients,
                seconds=args.seconds,
                workers=args.workers or 2,
                size=args.size if args.size != 1024 else 128,
                frames=args.frames if args.frames != 20 else 4,
            )
        return run_serve_bench(clients=args.clients, seconds=args.seconds)


def _pipeline(args: argparse.Namespace) -> dict[str, Any]:
    from causalscope.daemon.bench.pipeline import run_pipeline_bench

    if args.nodes is not None:
        from causalscope.daemon.bench.scaling import run_scaling_bench

        return run_scaling_bench(
            nodes=args.nodes, n=args.n or 8, size=args.size, frames=args.frames
        )

    if args.stages:
        from causalscope.daemon.bench.worker_stages import run_worker_stages_bench

        return run_worker_stages_bench(
            size=args.size,
            frames=args.frames,
            n=args.n or 3,
            device=args.device,
            config=args.config,
            preset=args.preset,
        )
    report = run_pipeline_bench(
        n=args.n or 20,
        size=args.size,
        frames=args.frames,
        memory_n=args.memory_n,
        n_workers=args.workers,
        device=args.device,
    )
    report["summary"] = {
        "exposures_per_minute": report["throughput"]["exposures_per_minute"],
        "median_latency_s": report["latency"]["latency_s"]["median"],
        "memory_growth": report.get("memory", {}).get("growth"),
    }
    return report


def _restoration_or_picking(args: argparse.Namespace) -> dict[str, Any]:
    # accuracy at --size (1024), time at 4096^2 unless --sizes leaves 4096 out
    from causalscope.daemon.bench import picking, restoration
    from causalscope.models.errors import InputError

    bench = restoration if args.what == "restoration" else picking
    cases = args.cases or list(bench.CASES)
    if unknown := [c for c in cases if c not in bench.CASES]:
        raise InputError("Unknown case", f"{unknown}; choose from {sorted(bench.CASES)}")
    timing = 4096 if args.sizes is None or "4096" in args.sizes else None
    seeds = args.seeds or [0]
    common = {"cases": cases, "size": args.size, "seeds": seeds, "timing_size": timing}
    if args.what == "restoration":
        if args.topaz is not None or args.real_only:
            raise InputError(
                "--topaz and --real-only are for bench picking", f"not for {args.what}"
            )
        return restoration.run_restoration_bench(**common, device=args.device)
    shared = args.shared_data if args.shared_data.is_dir() else None
    if (args.topaz is not None or args.real_only) and not (args.shared_data / "picking").is_dir():
        raise InputError(
            "No real micrographs",
            f"--{'topaz' if args.topaz is not None else 'real-only'} needs "
            f"{args.shared_data / 'picking'}, which does not exist (give --shared-data)",
        )
    report = picking.run_picking_bench(
        **common,
        device=args.device,
        shared_data=shared,
        cross_validate=args.cross_validate,
        finetune=args.finetune,
        topaz=args.topaz,
        real_only=args.real_only,
    )
    if args.from_classes and not args.real_only:
        from causalscope.daemon.bench._class_finetune import classes_finetune_bench

        tuned = report["finetune_classes"] = classes_finetune_bench()
        report["summary"]["finetune_classes"] = {
            key: tuned[key]
            for key in ("clean_picks_selected", "contamination_picks_selected", "adopted", "mean")
        }
    return report


def _ctf(args: argparse.Namespace) -> dict[str, Any]:
    from causalscope.daemon.bench.ctf import SIZES, run_ctf_bench

    shared = args.shared_data if args.shared_data.is_dir() else None
    return run_ctf_bench(
        sizes=args.sizes or list(SIZES),
        n_cases=args.n or 12,
        device=args.device,
        shared_data=shared,
        bound=args.bound,
    )


def _reconstruction(args: argparse.Namespace) -> dict[str, Any]:
    from causalscope.models.errors import InputError

    if args.timing:
        from causalscope.daemon.bench.reconstruction_timing import run_timing_bench

        return run_timing_bench(
            n=args.n or 10_000, threads=args.threads, device=args.device, store=args.store
        )
    if args.ab_initio:
        from causalscope.daemon.bench.reconstruction_ab_initio import run_ab_initio_bench

        structure = args.structure or args.shared_data / "models" / "5a1a.pdb"
        return run_ab_initio_bench(
            seeds=args.seeds or [0],
            structure=Path(structure),
            n=args.n or 1000,
            symmetry=args.symmetry,
            final_resolution_angstrom=args.ab_initio_resolution,
            device=args.device,
        )
    if args.refine:
        from causalscope.daemon.bench.reconstruction_refine import run_refinement_bench

        return run_refinement_bench(
            seeds=args.seeds or [0],
            n=args.n or 1000,
            structure=args.structure,
            symmetry=args.symmetry,
            device=args.device,
        )
    if args.device != "cpu":
        raise InputError(
            "No device for this benchmark",
            f"reconstruction with --device {args.device}: only --timing, --refine and "
            "--ab-initio run on a GPU",
        )
    from causalscope.daemon.bench.reconstruction import run_reconstruction_bench

    return run_reconstruction_bench(seeds=args.seeds or [0], n=args.n or 8000)


def _classes(args: argparse.Namespace) -> dict[str, Any]:
    from causalscope.daemon.bench.classes import run_classes_bench

    shared = args.shared_data if args.shared_data.is_dir() else None
    return run_classes_bench(
        seeds=args.seeds or list(range(6)),
        n=args.n or 3000,
        classes=args.classes,
        shared_data=shared,
    )


def _scores(args: argparse.Namespace) -> dict[str, Any]:
    from causalscope.daemon.bench.scores import run_scores_bench

    seeds = tuple(args.seeds or [0, 1])
    if len(seeds) != 2:
        raise ValueError(f"scores: --seeds takes two seeds (learning, testing), got {seeds}")
    size = args.scores_size
    frames = 12 if args.frames == 20 else args.frames
    return run_scores_bench(
        n=args.n or 24,
        size=size,
        frames=frames,
        seeds=(seeds[0], seeds[1]),
        pixel_size_angstrom=args.pixel_size,
        repro_n=args.repro_n,
        repro_seeds=tuple(args.repro_seeds),
        repro_only=args.repro_only,
    )


def _triage(args: argparse.Namespace) -> dict[str, Any]:
    from causalscope.daemon.bench.triage import run_triage_bench

    shared = args.shared_data if args.shared_data.is_dir() else None
    seed = (args.seeds or [0])[0]
    size = 512 if args.size == 1024 else args.size
    return run_triage_bench(n=args.n or 20, size=size, seed=seed, shared_data=shared)


def _novelty(args: argparse.Namespace) -> dict[str, Any]:
    from causalscope.daemon.bench.novelty import run_novelty_bench

    shared = args.shared_data if args.shared_data.is_dir() else None
    return run_novelty_bench(
        shared_data=shared,
        n=args.n or 600,
        classes=args.classes if args.classes != 50 else 12,
        index_size=args.index_size,
        seed=(args.seeds or [0])[0],
    )


def _faults(args: argparse.Namespace) -> dict[str, Any]:
    import sys

    from causalscope.daemon.bench.faults import format_table, run_faults_bench
    from causalscope.models.errors import InputError

    if not 0 <= args.daemon_kills <= 4:
        raise InputError("Invalid --daemon-kills", f"0 to 4, got {args.daemon_kills}")
    full = args.full
    report = run_faults_bench(
        n=args.n or (200 if full else 50),
        size=args.size if args.size != 1024 else (512 if full else 256),
        frames=args.frames if args.frames != 20 else (10 if full else 6),
        workers=args.workers or 2,
        interval_s=args.interval if args.interval is not None else 1.0,
        worker_kills=args.worker_kills if args.worker_kills is not None else (6 if full else 3),
        oom_kills=args.oom_kills if args.oom_kills is not None else (3 if full else 1),
        daemon_kills=args.daemon_kills,
        disk_full=not args.no_disk_full,
        disk_fills=2 if full else 1,
    )
    print(format_table(report), file=sys.stderr, flush=True)
    return report


def _soak(args: argparse.Namespace) -> dict[str, Any]:
    from causalscope.daemon.bench.soak import run_soak_bench

    return run_soak_bench(
        n=args.exposures or (10_000 if args.full else 600),
        size=args.size if args.size != 1024 else 64,
        frames=args.frames if args.frames != 20 else 2,
        workers=args.workers or 2,
        timeout_s=60.0 * args.max_minutes,
    )


#: the benchmark of each ``what``
BENCHES: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "motion": _motion,
    "causal": _causal,
    "tui": _tui,
    "pipeline": _pipeline,
    "restoration": _restoration_or_picking,
    "picking": _restoration_or_picking,
    "ctf": _ctf,
    "reconstruction": _reconstruction,
    "classes": _classes,
    "scores": _scores,
    "triage": _triage,
    "report": _report,
    "serve": _serve,
    "novelty": _novelty,
    "faults": _faults,
    "soak": _soak,
}
