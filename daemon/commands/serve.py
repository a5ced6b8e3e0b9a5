"""Serve the sessions under a folder over HTTP (Ray Serve): the facility view and the API.

Every session under SESSIONS_DIR (default: store.directory), live or finished: its summary,
exposures (paged, filtered), thumbnails, causes, 2D classes, maps, one read-only SQL SELECT,
a live event stream (server-sent events), and Prometheus metrics at /metrics. A running
session is read through its query endpoint (its file stays the daemon's), a finished one from
its file read-only. The API's reference at /docs (opens offline; Swagger UI at
/docs/swagger).

Binds 127.0.0.1 unless --host says otherwise; any other address needs a token
(--token-file), which every request then carries as 'Authorization: Bearer TOKEN'. Actions
that change a session (labels, pause, thresholds) need that session's control token in the
header 'X-Session-Token'. Stop with Ctrl-C.

Examples:
  causalscope serve sessions
  causalscope serve /data/sessions --port 8080
  causalscope serve /data/sessions --host 0.0.0.0 --token-file ~/.causalscope-token
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from causalscope.models.errors import InputError

__all__ = ["add_arguments", "add_serve_arguments", "read_token", "run", "serve_settings"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the serve options."""
    parser.add_argument(
        "sessions_dir",
        nargs="?",
        type=Path,
        metavar="SESSIONS_DIR",
        help="folder of sessions (default: store.directory)",
    )
    add_serve_arguments(parser)
    parser.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """``--host``, ``--port`` and ``--token-file`` (shared with ``watch --serve``)."""
    parser.add_argument("--host", metavar="H", help="address to bind (default: serve.host)")
    parser.add_argument("--port", type=int, metavar="P", help="TCP port (default: serve.port)")
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="file holding the API token (required for a non-loopback --host)",
    )


def read_token(path: Path | None) -> str | None:
    """The token in ``path`` (surrounding white space removed), or None without a file."""
    if path is None:
        return None
    try:
        token = Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise InputError(
            "Cannot read the token file", f"{path}: {exc.strerror or exc}", path=path
        ) from exc
    if len(token) < 16:
        raise InputError(
            "Token too short", f"{path}: the token has {len(token)} characters; use 16 or more"
        )
    return token


def serve_settings(args: argparse.Namespace, settings: Any) -> tuple[str, int, str | None]:
    """Host, port and token from the flags, else the settings; checked before anything starts."""
    from causalscope.daemon.serve import check_bind

    host = args.host or settings.serve.host
    port = args.port or settings.serve.port
    if not 1 <= port <= 65535:
        raise InputError("Invalid port", f"--port must be from 1 to 65535, got {port}")
    token = read_token(args.token_file or settings.serve.token_file)
    check_bind(host, token)
    return host, port, token


def run(args: argparse.Namespace) -> int:
    """Start Ray (or join it), serve the API, wait for Ctrl-C."""
    from causalscope.config import load_settings
    from causalscope.daemon.serve import start_api
    from causalscope.daemon.workers import start_ray

    settings = load_settings(args.config, args.preset)
    host, port, token = serve_settings(args, settings)
    folder = Path(args.sessions_dir or settings.store.directory)
    if not folder.is_dir():
        raise InputError("Sessions folder not found", f"{folder} is not a folder", path=folder)
    start_ray(args.ray_address)
    url = start_api(folder, host=host, port=port, token=token)
    print(f"causalscope serve: {folder.resolve()} at {url} (docs {url}/docs)", flush=True)
    # Ctrl-C (and a polite kill) end the command even where it was started with SIGINT
    # ignored (a background job of a script; Python then installs no handler): the command
    # once kept running after Ctrl-C with the main thread in this wait
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        # short waits: Python raises KeyboardInterrupt only once the main thread runs again
        idle = threading.Event()
        while not idle.wait(0.5):
            pass
    except KeyboardInterrupt:
        if not _close_within(_STOP_S):
            # a stuck Serve or Ray would hold the exit too (Ray shuts down again at exit, and
            # its threads are waited for): leave now; the local Ray's processes end with ours
            print("causalscope: interrupted", file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(130)
        raise
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


#: how long Ctrl-C waits for Serve and Ray to shut down (Serve's controller took over a minute
#: on a loaded machine, and the command once never exited)
_STOP_S = 60.0


def _close_within(seconds: float) -> bool:
    """Shut Serve, then this process's Ray connection, down, waiting at most ``seconds``;
    False (and said) when they did not finish in time."""
    import contextlib

    import ray

    from causalscope.daemon.serve import stop_api

    def close() -> None:
        with contextlib.suppress(Exception):  # Ray may be gone already
            stop_api()
        with contextlib.suppress(Exception):
            ray.shutdown()

    closing = threading.Thread(target=close, name="serve-shutdown", daemon=True)
    closing.start()
    closing.join(seconds)
    if closing.is_alive():
        print(
            f"causalscope serve: Serve and Ray did not shut down within {seconds:.0f} s; "
            "exiting anyway",
            flush=True,
        )
        return False
    return True
