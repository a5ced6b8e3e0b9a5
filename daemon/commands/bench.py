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
          cluster of N single-CPU nodes with 1 actor and with N, and the ratio; with --stages,
          the exposure worker alone, stage by stage (what one GPU spends on a movie: --device
          cuda --size 4096 --frames 40), with movies per hour and accuracy against the truth
  reconstruction  half-map FSC against the truth map, the Rosenthal-Henderson B-factor against
          the simulated envelope and its forecast, and the cost per particle as the set grows
          (--n particles, default 8000, box 48, known poses); with --refine, refinement of
          simulated particles (--n, default 1000, box 64 at 2 A/px) from a 30 A reference:
          pose errors (folded by --symmetry, the specimen's point group; the refinement
          itself imposes none) and offset errors, gold-standard FSC against the truth's, time
          per particle;
          with --timing, the running 2D classification and 3D refinement of --n (10,000)
          simulated particles at box 128 (2 A/px) in batches of 1,000 on --threads (2): each
          batch's update and the save of the 2D classifier after it (its particle images in
          a file as the live evaluator keeps them, or --store memory), a full 2D pass, the 3D
          update, peak memory (resident and anonymous), the load average;
          with --ab-initio, a map without a reference from --n (1000) simulated particles of
          --structure (default 5a1a beta-galactosidase from ../shared/data/models, box 80 at
          2.56 A/px) to --ab-initio-resolution (12 A) with --symmetry (C1): its FSC against the
          truth at 0.5 after superposing it in both hands, the gold-standard resolution of
          reference-based refinement of the same particles, their ratio, the hand found with
          both correlations, the times; --timing, --refine and --ab-initio run on --device
          (cpu or cuda; the device and each stage's peak GPU memory are reported)

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
          particles, default 3000; --classes, default 50; --seeds, default 0-5: 2D results
          move from seed to seed, so one seed says little; about 3 minutes)

  report  the session report: a synthetic session of --n (1,000) exposures written through the
          store (records, causal updates, scores), its report's size and the time to render it
  serve   the HTTP API: --clients (10) polling a session for --seconds (10) while it commits 2
          exposures/s: response median/p99/max, errors, the commit time without and with the
          load, the event stream's delay (e.g. --clients 50 --seconds 60); with --live, a
          real session (watch --serve on Ray) processing 128 px movies meanwhile: its pace
          and latency without and with the clients (e.g. --live --clients 50 --seconds 60)
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
        "--live",
        action="store_true",
        help="serve: a live session processing movies (watch --serve on a Ray cluster of its "
        "own; --size 128, --frames 4, --workers 2) instead of a store committing records",
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
        help="motion, restoration, picking: seeds (default 0); causal: sessions (default 0-9); "
        "classes: seeds (default 0-5)",
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
        help="picking: the learned picker's EMPIAR-10059 leave-one-out cross-validation "
        "(five trainings)",
    )
    parser.add_argument(
        "--finetune",
        action="store_true",
        help="picking: session fine-tuning on one labelled EMPIAR-10059 micrograph, scored on "
        "the other four (each of the five in turn; with and without self-training)",
    )
    parser.add_argument(
        "--from-classes",
        action="store_true",
        help="picking: session fine-tuning from its own 2D classes on simulated exposures with "
        "aggregates, beside the labels alone and self-training (about 4 minutes)",
    )
    parser.add_argument(
        "--topaz",
        default=None,
        metavar="PYTHON",
        help="picking: also Topaz's pretrained general model (resnet16) on the same real "
        "micrographs, run through PYTHON, an interpreter of another environment with topaz-em "
        "0.3.20 (../shared/PEERS.md; never a dependency of causalscope)",
    )
    parser.add_argument(
        "--real-only",
        action="store_true",
        help="picking: the real micrographs alone (with --topaz, --cross-validate and "
        "--finetune when given): no simulated micrographs, no timing",
    )
    parser.add_argument(
        "--refine",
        action="store_true",
        help="reconstruction: gold-standard refinement of simulated particles from a 30 A "
        "reference (--n particles, default 1000) instead of known poses",
    )
    parser.add_argument(
        "--stages",
        action="store_true",
        help="pipeline: the exposure worker alone (no Ray), stage by stage, on one --size x "
        "--frames movie run --n (3) times after a warm-up, on --device",
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
        "--store",
        choices=("file", "memory"),
        default="file",
        help="reconstruction --timing: where the 2D classifier keeps its particle images: a "
        "memory-mapped file, as the live evaluator does (default), or host memory",
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
        "--symmetry",
        default="C1",
        help="reconstruction --ab-initio: point group (C1); --refine: the specimen's, by "
        "which the pose errors are folded (e.g. O for apoferritin)",
    )
    parser.add_argument(
        "--structure",
        default=None,
        help="reconstruction --refine: a PDB/mmCIF/MRC to simulate (default an asymmetric "
        "phantom; a structure's pose errors need its --symmetry); --ab-initio: default "
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
    from causalscope.daemon.bench._machine import machine_load
    from causalscope.daemon.commands._bench_runs import BENCHES
    from causalscope.models.errors import InputError

    # the dashboard's and the API's benchmarks must not load torch, as they do not
    if args.what not in ("tui", "serve"):
        import torch

        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise InputError("No GPU", f"--device {args.device} but no CUDA device is visible")
    with machine_load() as machine:
        report = BENCHES[args.what](args)
    # what the cores were shared with: a number read later says so
    report["machine"] = report["summary"]["machine"] = machine
    if args.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report["summary"], indent=2))
    return 0
