"""The HTTP API on Ray Serve: every session under a folder, live or finished.

:func:`make_api` builds the FastAPI app (:mod:`.app`; reads in :mod:`.routes`, the event
stream and the operator's actions in :mod:`.routes_live`, Prometheus in :mod:`.metrics`, the
SQL guard in :mod:`.sql_guard`); :func:`start_api` serves it with Ray Serve (:mod:`.deploy`).
"""

from causalscope.daemon.serve.app import ApiOptions, check_bind, make_api
from causalscope.daemon.serve.deploy import APP_NAME, start_api, stop_api

__all__ = ["APP_NAME", "ApiOptions", "check_bind", "make_api", "start_api", "stop_api"]
