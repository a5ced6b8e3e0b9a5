"""The API on Ray Serve: one FastAPI ingress deployment over a folder of sessions.

:func:`start_api` starts Serve's HTTP proxy on the given address (127.0.0.1 by default; any
other address only with a token) in the Ray cluster this process is connected to, and
:func:`stop_api` shuts it down. The replica takes no CPU from the cluster (its work is
waiting on sessions' endpoints and small reads), so it never competes with exposure actors
for their slots.
"""

from __future__ import annotations

from pathlib import Path

from causalscope.daemon.serve.app import ApiOptions, check_bind, make_api

__all__ = ["APP_NAME", "start_api", "stop_api"]

#: The Serve application's name.
APP_NAME = "causalscope"
#: Requests one replica handles at once (the rest wait in Serve's queue).
_MAX_ONGOING = 128


def start_api(
    sessions_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
) -> str:
    """Serve the API over ``sessions_dir`` at ``host:port``; its base URL.

    Ray must be initialised (``ray.init`` or :func:`causalscope.daemon.workers.start_ray`).

    Raises
    ------
    InputError
        ``host`` is not a loopback address and no ``token`` was given, or ``sessions_dir``
        is not a folder.
    """
    from ray import serve

    from causalscope.models.errors import InputError

    check_bind(host, token)
    folder = Path(sessions_dir).resolve()
    if not folder.is_dir():
        raise InputError("Sessions folder not found", f"{folder} is not a folder", path=folder)
    api = make_api(ApiOptions(sessions_dir=folder, token=token))

    @serve.deployment(
        name="api",
        ray_actor_options={"num_cpus": 0},
        max_ongoing_requests=_MAX_ONGOING,
    )
    @serve.ingress(api)
    class Api:
        """The ingress deployment: the routes are the FastAPI app's."""

    # warnings only, no line per request: the operator's terminal is the session's
    quiet = {"log_level": "WARNING", "enable_access_log": False}
    serve.start(http_options={"host": host, "port": port}, logging_config=quiet)
    serve.run(
        Api.bind(),  # type: ignore[attr-defined]
        name=APP_NAME,
        route_prefix="/",
        logging_config=quiet,
    )
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def stop_api() -> None:
    """Shut Serve down (its proxy and the API's replica)."""
    from ray import serve

    serve.shutdown()
