"""Process a session live: watch the microscope's folder (or receive its frame stream).

Every movie that appears (EPU or SerialEM layout, MRC/TIFF/EER, with its XML or mdoc) is
processed once it has settled: motion correction, CTF estimation and the sanity gate, on Ray
actors (a local cluster, or --ray-address to join one). Results go into one DuckDB file per
session, micrographs and thumbnails beside it, and RELION's micrographs_ctf.star is kept
current. Stop with Ctrl-C; run it again on the same folder and it resumes: nothing done is
redone and nothing unfinished is lost.

Examples:
  causalscope watch /data/epu/session01
  causalscope watch --zmq tcp://127.0.0.1:5555 --session grid3
  causalscope watch /data/epu/session01 --serve --port 8080
  causalscope watch /data/epu/session01 --supervise   (started again if its process dies)
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from causalscope.daemon.commands.serve import add_serve_arguments, serve_settings
from causalscope.daemon.supervisor import SUPERVISED
from causalscope.models.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the watch options."""
    parser.add_argument("directory", nargs="?", type=Path, metavar="DIR", help="folder to watch")
    parser.add_argument("--zmq", metavar="ADDR", help="receive frames on this ZeroMQ address")
    add_session_arguments(parser)
    parser.add_argument(
        "--serve",
        action="store_true",
        help="serve the HTTP API over the sessions folder while the session runs (see `serve`)",
    )
    add_serve_arguments(parser)
    parser.add_argument(
        "--picker-labels",
        type=Path,
        metavar="DIR",
        help=(
            "fine-tune the learned picker on your picks: one STAR or CSV file per exposure in "
            "DIR (<exposure>.star, pixels of its dose-weighted sum, every particle), read as "
            "they appear (processing.picking.tuning.labels)"
        ),
    )
    parser.add_argument(
        "--supervise",
        action="store_true",
        help=(
            "run the session in a child process and start it again when it dies (Ray's "
            "control store lost, the kernel's OOM killer, a crash); it resumes where it stopped"
        ),
    )


def add_session_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``watch`` and ``demo``."""
    parser.add_argument("--session", metavar="NAME", help="session name (default: from source)")
    parser.add_argument(
        "--sessions-dir", type=Path, metavar="DIR", help="where sessions live (store.directory)"
    )
    parser.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster")
    parser.add_argument("--workers", type=int, metavar="N", help="exposure actors")
    parser.add_argument(
        "--threads-per-worker", type=int, default=1, metavar="N", help="torch threads per actor"
    )
    parser.add_argument(
        "--until-idle",
        type=float,
        metavar="SECONDS",
        help="stop when nothing has happened for SECONDS (default: run until Ctrl-C)",
    )
    parser.add_argument(
        "--no-endpoints",
        action="store_true",
        help="do not open the PUB, query and control endpoints (several sessions on one machine)",
    )
    parser.add_argument(
        "--tui",
        action="store_true",
        help="show the dashboard in this terminal while the session runs (q quits both)",
    )


def session_for(args: argparse.Namespace, settings: Any, directory: Path | None, zmq: str | None):
    """The session's paths from --session/--sessions-dir or the settings and the source."""
    from causalscope.daemon.session import SessionPaths, default_session_name

    name = args.session or settings.store.session_name
    if name is None:
        name = default_session_name(directory=directory, stream_address=zmq)
    root = args.sessions_dir or settings.store.directory
    return SessionPaths.under(Path(root), name)


def run(args: argparse.Namespace) -> int:
    """Run the session until Ctrl-C (or --until-idle)."""
    from causalscope.config import load_settings
    from causalscope.daemon.live import LiveOptions, LiveSession

    if args.directory is None and args.zmq is None:
        raise InputError("Nothing to watch", "give a folder to watch or --zmq ADDRESS")
    if args.supervise and not os.environ.get(SUPERVISED):
        return _supervised(args)
    if args.directory is not None and not args.directory.is_dir():
        raise InputError(
            "Folder not found", f"{args.directory} is not a folder", path=args.directory
        )
    overrides = {}
    if args.picker_labels is not None:
        overrides["processing.picking.tuning.labels"] = str(args.picker_labels)
    settings = load_settings(args.config, args.preset, overrides=overrides)
    serving = bool(getattr(args, "serve", False) or settings.serve.enabled)
    if serving and args.no_endpoints:
        raise InputError(
            "--serve needs the endpoints", "the API reads a running session through them"
        )
    bind = serve_settings(args, settings) if serving else None
    paths = session_for(args, settings, args.directory, args.zmq)
    options = LiveOptions(
        directory=args.directory,
        stream_address=args.zmq,
        ray_address=args.ray_address,
        n_workers=args.workers,
        threads_per_worker=args.threads_per_worker,
        until_idle_s=None if args.tui else args.until_idle,
        publish=not args.no_endpoints or args.tui,
        query=not args.no_endpoints or args.tui,
        control=not args.no_endpoints or args.tui,
        terminal_logs=not args.tui,
    )
    print(f"causalscope watch: session {paths.name} in {paths.root}", flush=True)
    if args.tui:
        session = LiveSession(settings, paths, options, reporter=log_reporter(paths))
        run_with_dashboard(session, bind)
    else:
        session = LiveSession(settings, paths, options)
        _stop_on_sigterm(session)
        try:
            session.open()
            _announce(session, args)
            _restarted(session)
            if bind is not None:
                _start_api(session, bind)
            session.run()
        finally:
            if bind is not None:
                _stop_api()
            session.close()
    print_summary(paths.database)
    return 0


def _supervised(args: argparse.Namespace) -> int:
    """This process only supervises: the session runs (and runs again) in a child."""
    from causalscope.config import load_settings
    from causalscope.daemon.supervisor import RestartPolicy, session_command, supervise

    if args.tui:
        raise InputError(
            "--supervise runs without the dashboard",
            "the session runs in a process of its own; open the dashboard beside it with "
            "`causalscope tui`",
        )
    resilience = load_settings(args.config, args.preset).processing.resilience
    policy = RestartPolicy(resilience.daemon_restart_pause_s, resilience.daemon_restarts_per_hour)
    return supervise(session_command([a for a in args._argv if a != "--supervise"]), policy)


def _restarted(session: Any) -> None:
    """Under --supervise, a restarted session says why its predecessor ended."""
    from causalscope.daemon.alerts import Alert
    from causalscope.daemon.supervisor import RESTART_REASON

    reason = os.environ.get(RESTART_REASON)
    if reason:
        session.raise_alert(
            Alert(
                "daemon_restarted",
                "warn",
                f"The session was started again: {reason}; nothing done is redone",
                "If it repeats, read session.log and Ray's logs (its session folder); with "
                "--ray-address, check that the cluster's head node is up.",
            )
        )


def log_reporter(paths: Any) -> Any:
    """The terminal's lines, written to ``<session>/session.log`` while the dashboard is shown."""
    from causalscope.daemon.terminal import TerminalReporter

    paths.root.mkdir(parents=True, exist_ok=True)
    handle = (paths.root / "session.log").open("a", encoding="utf-8")
    return TerminalReporter(handle)


def _start_api(session: Any, bind: tuple[str, int, str | None]) -> None:
    """Serve the API over the session's folder of sessions (Ray is started for it)."""
    from causalscope.daemon.serve import start_api
    from causalscope.daemon.workers import start_ray

    host, port, token = bind
    start_ray(session.options.ray_address, log_to_terminal=session.options.terminal_logs)
    url = start_api(session.paths.root.parent, host=host, port=port, token=token)
    print(f"  HTTP API at {url} (docs {url}/docs)", flush=True)


def _stop_api() -> None:
    import contextlib

    from causalscope.daemon.serve import stop_api

    with contextlib.suppress(Exception):  # Ray may be gone already (Ctrl-C)
        stop_api()


def run_with_dashboard(session: Any, bind: tuple[str, int, str | None] | None = None) -> None:
    """Run ``session`` in a background thread and the dashboard in this one.

    The session keeps serving the dashboard until it quits (``q``), which stops the session
    (unfinished exposures stay pending). An error of the session is raised here once the
    dashboard has closed.
    """
    import threading

    from causalscope.daemon.commands.tui import run_tui
    from causalscope.daemon.store import read_endpoints
    from causalscope.daemon.workers import start_ray
    from causalscope.tui.source import LiveSource

    errors: list[BaseException] = []
    # Ray's start-up messages go to the terminal: let them out before the dashboard owns it
    start_ray(session.options.ray_address, log_to_terminal=False)
    session.open()

    def loop() -> None:
        try:
            session.run()
        except BaseException as error:  # shown after the dashboard closes
            errors.append(error)

    runner = threading.Thread(target=loop, name="causalscope-session", daemon=True)
    try:
        endpoints = read_endpoints(session.paths.database)
        if endpoints is None:
            raise InputError(
                "No endpoints", f"session {session.paths.name} did not open its endpoints"
            )
        if bind is not None:
            _start_api(session, bind)
        runner.start()
        run_tui(session.settings, LiveSource.from_endpoints(endpoints))
    finally:
        if bind is not None:
            _stop_api()
        session.stop_event.set()
        if runner.is_alive():
            runner.join(timeout=60)
        session.close()
    if errors:
        raise errors[0]


def _announce(session: Any, args: argparse.Namespace) -> None:
    store = session.store
    source = f"watching {args.directory}" if args.directory else ""
    if args.zmq:
        source = " and ".join(s for s in (source, f"receiving frames on {args.zmq}") if s)
    print(f"  {source}", flush=True)
    print(f"  database {session.paths.database}", flush=True)
    if store is not None and getattr(store, "publish_endpoint", None):
        print(
            f"  live rows on {store.publish_endpoint}, queries on {store.query_endpoint}",
            flush=True,
        )


def _stop_on_sigterm(session: Any) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        session.stop_event.set()

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (tests): Ctrl-C still works
        pass


def print_summary(database: Path) -> None:
    """The session's summary, read from its database once the store is closed."""
    import duckdb

    from causalscope.daemon.store.summary import summarize

    if not database.exists():
        return
    with duckdb.connect(str(database), read_only=True) as connection:
        print(summarize(connection).describe(), flush=True)
    sys.stdout.flush()
