"""One place that turns every error into clusterfed's JSON error body.

A database that cannot be reached (restarting, refusing connections, connections cut) is
503 with ``Retry-After``, not a 500: the request was fine and will work again shortly.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from clusterfed.errors import FederationError, error_response, new_error_token

log = logging.getLogger("clusterfed.server")

RETRY_AFTER_SECONDS = 5
# The DBAPI's (asyncpg's, sqlite3's) own connection errors, as SQLAlchemy wraps them or
# not: connect() failures reach us as OSError (refused) or the driver's own class.
_UNAVAILABLE = (
    sa_exc.OperationalError,  # can't connect, server shutting down, database locked
    sa_exc.InterfaceError,  # connection closed under us
    sa_exc.TimeoutError,  # the pool had no connection to give in time
    ConnectionError,  # connect() refused or reset: asyncpg raises it unwrapped
)


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) says the database cannot be reached now."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _UNAVAILABLE) or _is_driver_connection_error(current):
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_driver_connection_error(exc: BaseException) -> bool:
    try:
        import asyncpg
    except ImportError:  # a host on SQLite only
        return False
    return isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.CannotConnectNowError
        | asyncpg.AdminShutdownError,
    )


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    errors = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        return 400, "request body is not valid JSON"
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return 422, "invalid request: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FederationError)
    async def _federation_error(_: Request, exc: FederationError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = _validation_message(exc)
        return error_response(status, message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if database_unavailable(exc):
            # The type only: a driver's message may quote the statement.
            return error_response(
                503,
                f"the database is unavailable ({type(exc).__name__}); try again shortly",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        error_token = new_error_token()
        log.exception(
            "error %s: unhandled %s on %s %s",
            error_token,
            type(exc).__name__,
            request.method,
            request.url.path,
        )
        return JSONResponse(
            {"errors": ["internal server error"], "error_token": error_token}, status_code=500
        )
