"""Watch a session in the terminal dashboard: live while it runs, or as recorded after.

With SESSION.duckdb: when SESSION.endpoints.json is beside it (the daemon is running) the
dashboard follows the session live through its publish, query and control endpoints; otherwise
it opens the finished session read-only. --connect takes an endpoints file or a database;
--publish/--query/--control/--token give the addresses directly (e.g. ports forwarded over SSH).

Keys: a accept, r reject, p pause/resume, t threshold, / filter, s sort, g graphs, ? help, q quit.

Examples:
  causalscope tui sessions/2024-05-01_apoferritin/session.duckdb
  causalscope tui --connect session.endpoints.json
  causalscope tui --publish tcp://127.0.0.1:5556 --query tcp://127.0.0.1:5557 \\
      --control tcp://127.0.0.1:5558 --token TOKEN
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from causalscope.config import Settings
    from causalscope.tui.source import SessionSource

__all__ = ["add_arguments", "run", "run_tui", "source_for"]

_ENDPOINTS_SUFFIX = ".endpoints.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the dashboard's options."""
    parser.add_argument(
        "session", nargs="?", type=Path, help="the session's DuckDB file (SESSION.duckdb)"
    )
    parser.add_argument(
        "--connect",
        metavar="ENDPOINTS_OR_DB",
        type=Path,
        help="a running session's SESSION.endpoints.json, or its database",
    )
    parser.add_argument("--publish", metavar="ADDR", help="the session's PUB address")
    parser.add_argument("--query", metavar="ADDR", help="the session's query address")
    parser.add_argument("--control", metavar="ADDR", help="the session's control address")
    parser.add_argument("--token", metavar="T", help="the session's control token")


def _from_endpoints_file(path: Path) -> SessionSource:
    from causalscope.daemon.client import load_endpoints
    from causalscope.tui.source import LiveSource

    endpoints = load_endpoints(path)
    return LiveSource.from_endpoints(endpoints, endpoints_file=Path(endpoints.database))


def source_for(args: argparse.Namespace) -> SessionSource:
    """The source the arguments name: live (endpoints) or recorded (a finished database)."""
    from causalscope.daemon.client import endpoints_path, read_endpoints
    from causalscope.models.errors import InputError
    from causalscope.tui.source import LiveSource, RecordedSource

    if args.publish or args.query:
        if not (args.publish and args.query):
            raise InputError("Incomplete addresses", "--publish and --query are needed together")
        return LiveSource(
            publish=args.publish, query=args.query, control=args.control, token=args.token
        )
    target: Path | None = args.connect or args.session
    if target is None:
        raise InputError(
            "No session", "give SESSION.duckdb, --connect ENDPOINTS_OR_DB, or --publish/--query"
        )
    if target.name.endswith(_ENDPOINTS_SUFFIX):
        return _from_endpoints_file(target)
    if read_endpoints(target) is not None:
        source = _from_endpoints_file(endpoints_path(target))
    elif args.connect is not None:
        raise InputError(
            "Session not running",
            f"{target}: no {endpoints_path(target).name} beside it (is the daemon running?); "
            "open a finished session without --connect",
            path=target,
        )
    else:
        return RecordedSource.open(target)
    if args.control or args.token:
        assert isinstance(source, LiveSource)
        source.control = args.control or source.control
        source.token = args.token or source.token
    return source


def run_tui(settings: Settings, source: SessionSource) -> None:
    """Run the dashboard in this terminal until the operator quits (main thread only)."""
    from causalscope.tui.app import make_app

    make_app(settings, source).run()


def run(args: argparse.Namespace) -> int:
    """Open the session's source and run the dashboard."""
    from causalscope.config import load_settings

    settings = load_settings(args.config, args.preset)
    run_tui(settings, source_for(args))
    return 0
