"""Measure accuracy against simulated truth, time per stage and memory (printed as JSON).

  motion  global and local trajectory error, time per stage and peak memory for
          1024 x 1024 x 20 and 4096 x 4096 x 40 movies; with --compare, teamtomo's
          torch-motion-correction on the same movies (install it with `pip install
          .[bench]`; it is never needed otherwise); with --compete, each movie again while
          another process keeps one core busy, and the slowdown
  ctf     defocus, astigmatism, angle and ice-thickness errors on simulated micrographs, and
          the RELION tutorial's real power spectra against CTFFIND-4.1 when ../shared/data is
          present; time per micrograph
  tui     the dashboard: time to load a --n (10,000) exposure session, and the event loop's
          latency while 5 exposures per second arrive for 20 s
  causal  the causal model on sessions drawn from a known graph (interval coverage, dominant
          cause, ranking, convergence, regime-change delay), its cost per update at 10,000
          exposures, and the Wiener filter with the model's B-factor against the exposure's own
          fit on image-simulated sessions (--n exposures at --size px)
  pipeline  the live pipeline end to end on local Ray: exposures per minute (a burst of --n
          movies), latency from a settled file to its committed record (movies at a pace the
          actors keep up with), and resident memory after --memory-n small exposures against
          after the first tenth; with --nodes N, scaling out instead: the burst on a local Ray
          cluster of N single-CPU nodes with 1 actor and with N, and the ratio
  reconstruction  half-map FSC against the truth map, the Rosenthal-Henderson B-factor against
          the simulated envelope and its forecast, and the cost per particle as the set grows
          (--n particles, default 8000, box 48, known poses); with --refine, refinement of
          simulated particles (--n, default 1000, box 64 at 2 A/px) from a 30 A reference:
          pose and offset errors, gold-standard FSC against the truth's, time per particle;
          with --timing, the running 2D classification and 3D refinement of --n (10,000)
          simulated particles at box 128 (2 A/px) in batches of 1,000 on --threads (2): each
          batch's update, a full 2D pass, the 3D update, peak memory, the load average;
          with --ab-initio, a map without a reference from --n (1000) simulated particles of
          --structure (default 5a1a beta-galactosidase from ../shared/data/models, box 80 at
          2.56 A/px) to --ab-initio-resolution (12 A) with --symmetry (C1): its FSC against the
          truth at 0.5 after superposing it in both hands, the gold-standard resolution of
          reference-based refinement of the same particles, their ratio, the hand found with
          both correlations, the times

  scores  the exposure scores on two simulated sessions (--n exposures each, default 24, at
          --scores-size 768 px, --frames 12), half of them bad of known cause: HyperScore's ROC AUC
          with default weights and with weights learned from the first session's labels,
          each injected obligation failure caught, Delta-Repro against the true defocus
          error on a population of varied difficulty (--repro-n exposures per seed of
          --repro-seeds, 16 and 0 1 2; --repro-only for that part alone), Meta across a
          regime change, the cost per exposure (--pixel-size, 1 A)
  classes  streaming 2D classification of a simulated session of two species (6z6u and 5a1a
          from ../shared/data/models) and junk: purity of every selected class, junk rejected,
          good particles kept, each class's FRC against the truth, time per particle (--n
          particles, default 3000; --classes, default 50)

  report  the session report: a synthetic session of --n (1,000) exposures written through the
          store (records, causal updates, scores), its report's size and the time to render it
  serve   the HTTP API: --clients (10) polling a session for --seconds (10) while it commits 2
          exposures/s: response median/p99/max, errors, the commit time without and with the
          load, the event stream's delay (e.g. --clients 50 --seconds 60)
  novelty  2D classes of simulated sessions of a structure in the index and of one not in
          it (6z6u and 5a1a from ../shared/data/models, else the phantoms), with 30 % junk,
          against an index of the first and the junk prototypes: Novelty of each session's
          classes, junk classes flagged as junk; the vector index's build and query time at
          --index-size (200,000) vectors (--n particles, 600; --classes 12 with --n)

  triage  micrograph triage: confusion matrix on --n (20) simulated micrographs per class
          (512 px) and the verdicts on the real micrographs of ../shared/data/picking

  faults  the chaos run: `causalscope watch` as a subprocess on a folder and a frame stream,
          on a Ray cluster of its own, while --n (50) small exposures (256 px, 6 frames)
          arrive: workers killed with SIGKILL (--worker-kills), Ray's memory monitor made to
          kill (--oom-kills), the session's disk filled and emptied (a tmpfs, where mounting is
          allowed), garbage and dropped frames on the stream, the daemon killed with kill -9
          (--daemon-kills, 2) and restarted; every exposure done or quarantined with a reason,
          exactly once (a table on stderr; --full: 200 exposures of 512 px, more faults)
  soak    --exposures (600; --full 10,000) tiny exposures (64 px, 2 frames) streamed through a
          live session: memory and open files of the daemon and each worker, latency and the
          database's growth at checkpoints, each with its slope per 1,000 exposures

Example:
  causalscope bench motion --json --cases 1024x1024x20 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the bench options."""
    parser.add_argument(
        "what",
        choices=[
            "motion",
            "ctf",
            "pipeline",
            "tui",
            "restoration",
            "picking",
            "causal",
            "reconstruction",
            "classes",
            "scores",
            "triage",
            "report",
            "serve",
            "novelty",
            "faults",
            "soak",
        ],
        help="which benchmark",
    )
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.add_argument(
        "--clients", type=int, default=10, metavar="N", help="serve: concurrent clients (10)"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=10.0,
        metavar="S",
        help="serve: seconds without, then with, the clients (10)",
    )
    parser.add_argument(
        "--bound", action="store_true", help="ctf: add the Cramér–Rao bound per simulated case"
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        metavar="CASE",
        help="motion: 1024x1024x20 and/or 4096x4096x40 (default both)",
    )
    parser.add_argument(
        "--sizes", nargs="+", choices=["1024", "4096"], help="ctf: micrograph sizes (default both)"
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=None,
        help="motion, restoration, picking: seeds (default 0); causal: sessions (default 0-9)",
    )
    parser.add_argument(
        "--n", type=int, default=None, help="ctf: simulated cases (12); pipeline: movies (20)"
    )
    parser.add_argument("--size", type=int, default=1024, help="pipeline: movie size")
    parser.add_argument("--frames", type=int, default=20, help="pipeline: frames per movie")
    parser.add_argument(
        "--memory-n", type=int, default=200, help="pipeline: exposures of the memory phase"
    )
    parser.add_argument("--workers", type=int, default=None, help="pipeline: exposure actors")
    parser.add_argument(
        "--nodes",
        type=int,
        default=None,
        help="pipeline: scaling instead: a local Ray cluster of NODES single-CPU nodes, the "
        "burst (--n, 8) with 1 actor and with NODES actors, and their ratio",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument(
        "--compare", action="store_true", help="motion: also run torch-motion-correction"
    )
    parser.add_argument(
        "--compete",
        action="store_true",
        help="motion: each movie again while another process keeps one core busy (slowdown)",
    )
    parser.add_argument(
        "--cross-validate",
        action="store_true",
        help="picking: the learned picker's EMPIAR-10059 cross-validation (seven trainings)",
    )
    parser.add_argument(
        "--refine",
        action="store_true",
        help="reconstruction: gold-standard refinement of simulated particles from a 30 A "
        "reference (--n particles, default 1000) instead of known poses",
    )
    parser.add_argument(
        "--timing",
        action="store_true",
        help="reconstruction: time the 2D and 3D updates as 10,000 particles arrive (--n)",
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="reconstruction --timing: torch threads (2)"
    )
    parser.add_argument(
        "--ab-initio",
        action="store_true",
        help="reconstruction: a map without a reference, against the truth and against "
        "reference-based refinement of the same particles",
    )
    parser.add_argument(
        "--ab-initio-resolution",
        type=float,
        default=12.0,
        metavar="A",
        help="reconstruction --ab-initio: the final resolution limit (12)",
    )
    parser.add_argument(
        "--symmetry", default="C1", help="reconstruction --ab-initio: point group (C1)"
    )
    parser.add_argument(
        "--structure",
        default=None,
        help="reconstruction --refine: a PDB/mmCIF/MRC to simulate (default an asymmetric "
        "phantom, the only case with pose errors); --ab-initio: default "
        "SHARED_DATA/models/5a1a.pdb",
    )
    parser.add_argument("--classes", type=int, default=50, help="classes: 2D classes (50)")
    parser.add_argument(
        "--index-size",
        type=int,
        default=200_000,
        help="novelty: vectors in the index whose query time is measured (200,000)",
    )
    parser.add_argument("--scores-size", type=int, default=768, help="scores: movie size (768 px)")
    parser.add_argument(
        "--repro-n",
        type=int,
        default=16,
        help="scores: exposures of varied difficulty per seed for Delta-Repro (16)",
    )
    parser.add_argument(
        "--repro-seeds",
        nargs="+",
        type=int,
        default=[0, 1, 2],
        help="scores: seeds of the Delta-Repro population (0 1 2)",
    )
    parser.add_argument(
        "--repro-only", action="store_true", help="scores: only the Delta-Repro population"
    )
    parser.add_argument(
        "--pixel-size",
        type=float,
        default=1.0,
        help="scores: pixel size of the simulated movies (1 A; the image triage needs fields "
        "of 2000 A, e.g. --scores-size 1024 --pixel-size 2)",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="faults: the full chaos run (200 exposures of 512 px, 6 worker kills, 3 kills by "
        "Ray's memory monitor, 2 disk fills); soak: 10,000 exposures",
    )
    parser.add_argument(
        "--worker-kills", type=int, default=None, help="faults: workers killed with SIGKILL (3)"
    )
    parser.add_argument(
        "--oom-kills", type=int, default=None, help="faults: kills by Ray's memory monitor (1)"
    )
    parser.add_argument(
        "--daemon-kills", type=int, default=2, help="faults: kill -9 of the daemon (2, at most 4)"
    )
    parser.add_argument(
        "--no-disk-full", action="store_true", help="faults: do not fill the session's disk"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=None,
        metavar="S",
        help="faults: seconds between arriving exposures (1.0)",
    )
    parser.add_argument(
        "--exposures",
        type=int,
        default=None,
        help="soak: exposures streamed through the live session (default 600; 10,000 with --full)",
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=120.0,
        metavar="M",
        help="soak: stop after M minutes and report what was reached (120)",
    )
    parser.add_argument(
        "--shared-data",
        type=Path,
        default=Path("..") / "shared" / "data",
        help="folder with relion_tutorial/ (default ../shared/data from the working directory)",
    )


def run(args: argparse.Namespace) -> int:
    """Run one benchmark and print its report."""
    from causalscope.models.errors import InputError

    # the dashboard's and the API's benchmarks must not load torch, as they do not
    if args.what not in ("tui", "serve"):
        import torch

        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise InputError("No GPU", f"--device {args.device} but no CUDA device is visible")
    benches = {
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
    report = benches[args.what](args)
    if args.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report["summary"], indent=2))
    return 0


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
        return run_serve_bench(clients=args.clients, seconds=args.seconds)


def _pipeline(args: argparse.Namespace) -> dict[str, Any]:
    from causalscope.daemon.bench.pipeline import run_pipeline_bench

    if args.nodes is not None:
        from causalscope.daemon.bench.scaling import run_scaling_bench

        return run_scaling_bench(
            nodes=args.nodes, n=args.n or 8, size=args.size, frames=args.frames
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
        return restoration.run_restoration_bench(**common, device=args.device)
    shared = args.shared_data if args.shared_data.is_dir() else None
    return picking.run_picking_bench(
        **common, device=args.device, shared_data=shared, cross_validate=args.cross_validate
    )


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
    if args.timing:
        from causalscope.daemon.bench.reconstruction_timing import run_timing_bench

        return run_timing_bench(n=args.n or 10_000, threads=args.threads)
    if args.ab_initio:
        from causalscope.daemon.bench.reconstruction_ab_initio import run_ab_initio_bench

        structure = args.structure or args.shared_data / "models" / "5a1a.pdb"
        return run_ab_initio_bench(
            seeds=args.seeds or [0],
            structure=Path(structure),
            n=args.n or 1000,
            symmetry=args.symmetry,
            final_resolution_angstrom=args.ab_initio_resolution,
        )
    if args.refine:
        from causalscope.daemon.bench.reconstruction_refine import run_refinement_bench

        return run_refinement_bench(
            seeds=args.seeds or [0], n=args.n or 1000, structure=args.structure
        )
    from causalscope.daemon.bench.reconstruction import run_reconstruction_bench

    return run_reconstruction_bench(seeds=args.seeds or [0], n=args.n or 8000)


def _classes(args: argparse.Namespace) -> dict[str, Any]:
    from causalscope.daemon.bench.classes import run_classes_bench

    shared = args.shared_data if args.shared_data.is_dir() else None
    return run_classes_bench(
        seeds=args.seeds or [0], n=args.n or 3000, classes=args.classes, shared_data=shared
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
