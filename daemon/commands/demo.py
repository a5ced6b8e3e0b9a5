"""Simulate a short session and process it live, then compare what was found with the truth.

The fake microscope writes movies into a temporary folder at a realistic pace (EPU layout,
TIFF movies with their XML, a gain reference and a defect list), exactly as a detector would.
A live session watches that folder (or, with --stream, receives the frames over ZeroMQ) and
processes every exposure on local Ray actors into a DuckDB session database. At the end it
prints the session's summary and each exposure's CTF against the simulated truth. It needs no
data files and no GPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
from pathlib import Path
from typing import Any

# the exposure-processing targets the demo's CTF is held to (Angstrom, degrees, nm)
DEFOCUS_TOLERANCE_A = 20.0
ASTIGMATISM_TOLERANCE_A = 20.0
ANGLE_TOLERANCE_DEG = 5.0
ASTIGMATIC_ABOVE_A = 200.0
ICE_TOLERANCE_NM = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the demo options."""
    parser.add_argument("--out", type=Path, metavar="DIR", help="keep everything here")
    parser.add_argument("--n", type=int, default=8, metavar="N", help="movies (default 8)")
    # 2048 px: big enough for the CTF targets (ice, astigmatism)
    parser.add_argument(
        "--size", type=int, default=2048, metavar="PX", help="movie size (default 2048)"
    )
    parser.add_argument(
        "--frames", type=int, default=16, metavar="F", help="frames per movie (default 16)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=8.0,
        metavar="SECONDS",
        help="one movie every SECONDS (default 8)",
    )
    parser.add_argument("--seed", type=int, default=1, metavar="S", help="random seed")
    parser.add_argument(
        "--stream", action="store_true", help="push frames over ZeroMQ instead of writing files"
    )
    parser.add_argument("--workers", type=int, metavar="N", help="exposure actors")
    parser.add_argument(
        "--tui", action="store_true", help="watch it on the dashboard (q quits and summarises)"
    )
    parser.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster")


def run(args: argparse.Namespace) -> int:
    """Simulate, process live, summarise, compare with the truth."""
    if args.out is not None:
        return _run(args, Path(args.out))
    with tempfile.TemporaryDirectory(prefix="causalscope-demo-") as tmp:
        return _run(args, Path(tmp))


def _free_tcp_address() -> str:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def _run(args: argparse.Namespace, out: Path) -> int:
    from causalscope.daemon.commands.watch import print_summary
    from causalscope.daemon.live import LiveOptions, LiveSession
    from causalscope.daemon.session import SessionPaths
    from causalscope.daemon.simulator import SimulationRequest

    microscope = out / "microscope"
    microscope.mkdir(parents=True, exist_ok=True)
    stream = _free_tcp_address() if args.stream else None
    settings = _demo_settings(args, microscope)
    paths = SessionPaths.under(out / "sessions", "demo")
    where = f"streamed over {stream}" if stream else f"written to {microscope}"
    print(
        f"causalscope demo: {args.n} exposures of {args.size}x{args.size}x{args.frames}, one "
        f"every {args.rate:g} s, {where}",
        flush=True,
    )
    print(f"  session {paths.root}", flush=True)
    request = SimulationRequest(
        out_dir=microscope, n_exposures=args.n, seed=args.seed, rate_s=args.rate, zmq_address=stream
    )
    simulation = _Simulation(settings, request)
    options = LiveOptions(
        directory=None if stream else microscope,
        stream_address=stream,
        ray_address=args.ray_address,
        n_workers=args.workers,
        # a movie lost on the way must not hang the demo; with the dashboard, q ends it
        until_idle_s=None if args.tui else 60.0,
        terminal_logs=not args.tui,
        command_line=["causalscope", "demo", *(["--tui"] if args.tui else [])],
    )
    if args.tui:
        from causalscope.daemon.commands.watch import log_reporter, run_with_dashboard

        session = LiveSession(settings, paths, options, reporter=log_reporter(paths))
        simulation.thread.start()
        run_with_dashboard(session)
        simulation.thread.join(timeout=60)
        print_summary(paths.database)
        return _compare_with_truth(paths.database, microscope / "truth.jsonl")
    session = LiveSession(settings, paths, options)
    try:
        session.open()
        simulation.thread.start()

        def all_in() -> bool:
            # the simulator is done and every movie it made has come out the other end
            counts = session.scheduler.counts if session.scheduler else None
            return simulation.finished.is_set() and (
                simulation.failure != []
                or (counts is not None and counts.committed + counts.quarantined >= args.n)
            )

        session.run(until=all_in)
    finally:
        session.close()
    simulation.thread.join(timeout=60)
    if simulation.failure:
        raise simulation.failure[0]
    print_summary(paths.database)
    return _compare_with_truth(paths.database, microscope / "truth.jsonl")


def _demo_settings(args: argparse.Namespace, microscope: Path) -> Any:
    """The demo's settings: the user's config and preset, with a small session, a fast
    watcher, the simulator's gain and defects, and endpoints on free local ports."""
    from causalscope.config import load_settings
    from causalscope.daemon.simulator import GAIN_FILE

    # two shots in each of two holes per square: eight exposures visit two squares, four holes
    overrides: dict[str, Any] = {
        "simulation": {
            "size_px": args.size,
            "n_frames": args.frames,
            "exposures_per_hole": 2,
            "holes_per_square": 2,
        },
        "watcher": {"settle_s": 1.0, "movie_patterns": ["*.tiff"], "metadata_wait_s": 5.0},
        "detector": {
            "gain_reference": str(microscope / GAIN_FILE),
            "defects_file": str(microscope / "defects.txt"),
        },
        # free ports: the demo must not collide with a session already running on this machine
        "store": {
            "publish_address": "tcp://127.0.0.1:0",
            "query_address": "tcp://127.0.0.1:0",
            "control_address": "tcp://127.0.0.1:0",
        },
    }
    settings = load_settings(args.config, args.preset, overrides)
    # the running 3D map refines against the simulated particle's own map (as a user gives a
    # known structure); ten classes suit the demo's thousand particles
    reference = _write_reference(settings, microscope / "reference.mrc")
    overrides["processing"] = {"reconstruction": {"classes": 10, "reference": str(reference)}}
    return load_settings(args.config, args.preset, overrides)


def _write_reference(settings: Any, path: Path) -> Path:
    """The simulated specimen's map at the movies' pixel size, in the extraction box."""
    from causalscope.daemon.formats.maps import write_mrc_map
    from causalscope.daemon.simulator import load_specimen
    from causalscope.models.simulate.density import specimen_map

    picking = settings.processing.picking
    apix = settings.microscope.pixel_size_angstrom
    box = 2 * max(8, round(picking.box_scale * picking.particle_diameter_angstrom / apix / 2))
    volume = specimen_map(
        load_specimen(settings.simulation.structure), box_px=box, pixel_size_angstrom=apix
    )
    return write_mrc_map(path, volume.numpy(), pixel_size_angstrom=apix)


class _Simulation:
    """The fake microscope on its own thread; an error it raises is kept for the main thread."""

    def __init__(self, settings: Any, request: Any) -> None:
        from causalscope.daemon.simulator import run_simulation

        self._simulate = run_simulation  # imported here, not on the thread
        self.finished = threading.Event()
        self.failure: list[BaseException] = []
        self._settings, self._request = settings, request
        self.thread = threading.Thread(target=self._run, name="causalscope-simulator", daemon=True)

    def _run(self) -> None:
        try:
            self._simulate(self._settings, self._request)
        except BaseException as error:  # reported by the main thread
            self.failure.append(error)
        finally:
            self.finished.set()


def ice_within_tolerance(error_nm: float | None, sigma_nm: float | None) -> bool | None:
    """Whether an ice estimate ``error_nm`` from the truth is within the demo's tolerance
    (True); None where there is no estimate, or where it is outside the tolerance but within
    twice the estimate's own ``sigma_nm`` (the estimator said it could not tell: not a miss);
    False otherwise."""
    if error_nm is None:
        return None
    if abs(error_nm) <= ICE_TOLERANCE_NM:
        return True
    if sigma_nm is not None and abs(error_nm) <= 2.0 * sigma_nm:
        return None
    return False


def _compare_with_truth(database: Path, truth_path: Path) -> int:
    """Print each exposure's CTF against the truth; 0 when every one is within tolerance."""
    from causalscope.daemon.store import SessionReader

    truth = {}
    for line in truth_path.read_text().splitlines():
        row = json.loads(line)
        truth[row["exposure_id"]] = row
    with SessionReader(database) as reader:
        rows = reader.select(
            "SELECT exposure_id, defocus_u_angstrom, defocus_v_angstrom, defocus_angle_deg, "
            "ice_thickness_nm, ice_thickness_sigma_nm FROM ctf ORDER BY exposure_id"
        ).rows
        states = dict(reader.select("SELECT exposure_id, state FROM exposures").rows)
    found = {row[0]: row for row in rows}
    width = max([len("exposure"), *(len(key) for key in truth)])
    print("\nCTF against the simulated truth (errors: found - true)")
    print(
        f"  {'exposure':<{width}} {'defocus':>8} {'d.err':>7} {'astig':>6} {'a.err':>6} "
        f"{'angle.err':>9} {'ice':>5} {'i.err':>6}"
    )
    misses = uncertain = 0
    defocus_errors = []
    for exposure_id, t in truth.items():
        if exposure_id not in found:
            state = states.get(exposure_id, "never seen")
            print(f"  {exposure_id:<{width}} not processed ({state})")
            continue
        _, du, dv, angle, ice, ice_sigma = found[exposure_id]
        true_mean = (t["defocus_u_angstrom"] + t["defocus_v_angstrom"]) / 2
        true_astig = abs(t["defocus_u_angstrom"] - t["defocus_v_angstrom"])
        d_err = (du + dv) / 2 - true_mean
        defocus_errors.append(abs(d_err))
        a_err = (du - dv) - true_astig
        astigmatic = true_astig >= ASTIGMATIC_ABOVE_A
        angle_err = _angle_error(angle, t["defocus_angle_deg"]) if astigmatic else None
        i_err = None if ice is None else ice - t["ice_thickness_nm"]
        # per exposure: astigmatism and angle (where astigmatic) and ice; defocus is a median
        ok = not astigmatic or (
            abs(a_err) <= ASTIGMATISM_TOLERANCE_A and (angle_err or 0.0) <= ANGLE_TOLERANCE_DEG
        )
        ice_verdict = ice_within_tolerance(i_err, ice_sigma)
        ok = ok and ice_verdict is not False
        misses += not ok
        within_sigma = ice_verdict is None and i_err is not None
        uncertain += within_sigma
        angle_text = "" if angle_err is None else f"{angle_err:8.1f}d"
        ice_text = "" if i_err is None else f"{i_err:+6.1f}"
        note = "" if ok else "  <- outside tolerance"
        if ok and within_sigma:
            note = f"  (ice: within its own 2 sigma, {2 * ice_sigma:.0f} nm)"
        print(
            f"  {exposure_id:<{width}} {true_mean / 1e4:6.2f}um {d_err:+7.1f} {true_astig:6.0f} "
            f"{a_err:+6.1f} {angle_text:>9} {t['ice_thickness_nm']:5.0f} {ice_text:>6}{note}"
        )
    median = statistics.median(defocus_errors) if defocus_errors else None
    verdict = (
        ""
        if median is None
        else (f"; median |defocus error| {median:.1f} A (target <= {DEFOCUS_TOLERANCE_A:g} A)")
    )
    not_judged = (
        f"; {uncertain} more outside the ice tolerance but within the estimate's own 2 sigma"
        if uncertain
        else ""
    )
    print(
        f"\n{len(found)} of {len(truth)} exposures processed; {misses} outside the astigmatism, "
        f"angle or ice tolerance (20 A, 5 deg where astigmatism >= 200 A, 10 nm){not_judged}"
        f"{verdict}"
    )
    _compare_picks(database, truth)
    return 0 if len(found) == len(truth) else 1


def _compare_picks(database: Path, truth: dict[str, dict[str, Any]]) -> None:
    """Print the picks of every processed exposure against the simulated particles (a match
    within a quarter diameter, as ``bench picking`` counts)."""
    import numpy as np

    from causalscope.daemon.store import SessionReader
    from causalscope.models.picking import match_picks

    with SessionReader(database) as reader:
        pickers = dict(reader.select("SELECT exposure_id, picker FROM picking").rows)
        rows = reader.select(
            "SELECT exposure_id, x_px, y_px FROM picks ORDER BY exposure_id, position"
        ).rows
    picks: dict[str, list[tuple[float, float]]] = {}
    for exposure_id, x, y in rows:
        picks.setdefault(exposure_id, []).append((x, y))
    hits = n_picks = n_true = 0
    distances: list[float] = []
    for exposure_id in pickers:
        t = truth.get(exposure_id)
        if t is None:
            continue
        centres = np.asarray(t["particles"], dtype=np.float64).reshape(-1, 2)
        found = np.asarray(picks.get(exposure_id, []), dtype=np.float64).reshape(-1, 2)
        diameter = 2.0 * t["particle_radius_angstrom"] / t["pixel_size_angstrom"]
        match = match_picks(found, centres, radius_px=0.25 * diameter)
        hits, n_picks, n_true = (
            hits + match.n_true_positive,
            n_picks + len(found),
            n_true + len(centres),
        )
        pairs = match.pairs
        distances += np.hypot(*(found[pairs[:, 0]] - centres[pairs[:, 1]]).T).tolist()
    if not n_true:
        return
    names = ", ".join(sorted(set(pickers.values())))
    precision, recall = hits / max(1, n_picks), hits / n_true
    print(
        f"picks ({names}) against the simulated particles: {n_picks} picks, {n_true} particles; "
        f"precision {precision:.2f}, recall {recall:.2f}, F1 {2 * hits / (n_picks + n_true):.2f}; "
        f"median distance to the centre {statistics.median(distances or [float('nan')]):.1f} px"
    )


def _angle_error(a: float, b: float) -> float:
    d = (a - b) % 180.0
    return float(min(d, 180.0 - d))
