"""Errors and the one error body every clusterfed response uses.

    FederationError            carries the HTTP status; ``response()`` renders it
    ├── Unauthorized (401)     malformed, unknown or rejected credentials
    ├── Forbidden (403)        a scope or permission says no
    ├── NotFound (404)
    ├── Unprocessable (422)    a request that cannot be served as asked
    └── RemoteError            a remote cluster could not give a usable answer
        ├── BadGateway (502)   refused, TLS failure, or a 5xx passed through with its status
        └── GatewayTimeout (504)

The body is ``{"errors": [message], "error_token": id}``; the same id goes into the log
line, so an operator can find the request a user reports. Messages never contain secrets.
"""

from __future__ import annotations

import logging
import secrets
import time

from starlette.responses import JSONResponse

log = logging.getLogger("clusterfed.errors")


def new_error_token() -> str:
    return f"{int(time.time())}+{secrets.token_hex(4)}"


def error_response(
    status: int, message: str, *, headers: dict[str, str] | None = None
) -> JSONResponse:
    error_token = new_error_token()
    log.info("error %s: %d %s", error_token, status, message)
    return JSONResponse(
        {"errors": [message], "error_token": error_token}, status_code=status, headers=headers
    )


class FederationError(Exception):
    status_code = 500

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code

    def response(self) -> JSONResponse:
        return error_response(self.status_code, self.message)


class Unauthorized(FederationError):
    status_code = 401


class Forbidden(FederationError):
    status_code = 403


class NotFound(FederationError):
    status_code = 404


class Unprocessable(FederationError):
    status_code = 422


class RemoteError(FederationError):
    status_code = 502


class BadGateway(RemoteError):
    status_code = 502


class GatewayTimeout(RemoteError):
    status_code = 504
