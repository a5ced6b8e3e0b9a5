"""The HTTP API's FastAPI app: options, errors as 4xx with a reason, the API token.

:func:`make_api` builds the app that Ray Serve's ingress deployment serves
(:mod:`.deploy`); its routes are in :mod:`.routes` (reads), :mod:`.routes_live` (the event
stream and the operator's actions) and :mod:`.metrics` (Prometheus).

Errors are JSON ``{"title": ..., "detail": ...}``: a bad parameter or query is 400 (422 for a
parameter of the wrong form), a missing session, exposure or file 404, a running session that
does not answer 503; anything unforeseen is 500 with the error's one-line description, never a
traceback.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from causalscope.daemon.client.errors import ControlError, QueryError, StoreError
from causalscope.models.errors import CausalscopeError, InputError

__all__ = ["ApiOptions", "check_bind", "is_loopback", "make_api", "require_api_token"]


@dataclass(frozen=True)
class ApiOptions:
    """What the API serves and who may ask.

    Attributes
    ----------
    sessions_dir
        The folder of sessions (absolute).
    token
        When set, every request but ``/health`` must carry ``Authorization: Bearer TOKEN``.
    """

    sessions_dir: Path
    token: str | None = None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to bind a non-loopback address without an API token (InputError)."""
    if not is_loopback(host) and not token:
        raise InputError(
            "API token required",
            f"binding {host!r} makes the API reachable from the network; give a token "
            "(--token-file FILE, or the setting serve.token_file / "
            "CAUSALSCOPE_SERVE__TOKEN_FILE) or bind 127.0.0.1",
        )


def _options(request: Request) -> ApiOptions:
    options: ApiOptions = request.app.state.options
    return options


def require_api_token(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> None:
    """The API token check (a dependency of every router but ``/health``)."""
    token = _options(request).token
    if token is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
        raise HTTPException(
            status_code=401,
            detail="this API needs its token: send the header 'Authorization: Bearer TOKEN'",
            headers={"WWW-Authenticate": "Bearer"},
        )


def _error(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"title": title, "detail": detail})


def _status_of(error: CausalscopeError) -> int:
    from causalscope.daemon.serve.sessions import NotFoundError

    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, QueryError | InputError):
        return 400
    if isinstance(error, ControlError):
        return 503 if error.title == "Session not answering" else 400
    if isinstance(error, StoreError):
        return 503
    return 400


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def make_api(options: ApiOptions) -> FastAPI:
    """The FastAPI app over the sessions in ``options.sessions_dir``."""
    from causalscope.daemon.serve import metrics, routes, routes_live

    app = FastAPI(
        title="causalscope",
        summary="Live cryo-EM sessions: exposures, causes, classes, maps, SQL, events, metrics.",
        version="1",
        docs_url="/docs/swagger",  # loads its script from a CDN; /docs needs nothing outside
        redoc_url=None,
    )
    app.state.options = options

    @app.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    def docs() -> HTMLResponse:
        """The API's reference as one self-contained page (opens without the internet)."""
        from causalscope.daemon.serve.docs import reference_page

        return HTMLResponse(reference_page(app.openapi()))

    @app.exception_handler(CausalscopeError)
    async def _causalscope_error(request: Request, error: CausalscopeError) -> JSONResponse:
        return _error(_status_of(error), error.title, error.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        detail = str(error.detail)
        if error.status_code == 404 and detail == "Not Found":
            detail = f"no such resource: {request.url.path} (see /docs)"
        response = _error(error.status_code, _phrase(error.status_code), detail)
        response.headers.update(error.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        reasons = []
        for item in error.errors():
            where = ".".join(str(part) for part in item.get("loc", ())[1:]) or "request"
            given = f" (got {item['input']!r})" if "input" in item else ""
            reasons.append(f"{where}: {item.get('msg', 'invalid')}{given}")
        return _error(422, "Invalid request", "; ".join(reasons))

    @app.exception_handler(Exception)
    async def _unforeseen(request: Request, error: Exception) -> JSONResponse:
        return _error(500, "Internal error", f"{type(error).__name__}: {error}")

    @app.get("/health", tags=["service"])
    def health() -> dict[str, object]:
        """Whether the API is up, and the folder it serves."""
        return {"status": "ok", "sessions_dir": str(_options_of(app).sessions_dir)}

    guarded = [Depends(require_api_token)]
    app.include_router(routes.router, dependencies=guarded)
    app.include_router(routes_live.router, dependencies=guarded)
    app.include_router(metrics.router, dependencies=guarded)
    return app


def _options_of(app: FastAPI) -> ApiOptions:
    options: ApiOptions = app.state.options
    return options
