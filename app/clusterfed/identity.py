"""What the middleware hands the host application for an accepted foreign token.

The host reads it from one place: ``request.state.federation_identity`` (the ASGI
``scope["state"]["federation_identity"]``), or with the FastAPI dependency
:func:`foreign_identity`. It is absent for local tokens and anonymous requests, which
are the host's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import Request

STATE_KEY = "federation_identity"


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user as stored locally (for a foreign user: the local mirror)."""

    uuid: str
    email: str | None
    username: str | None
    first_name: str | None
    last_name: str | None
    is_admin: bool
    is_active: bool
    is_invited: bool


@dataclass(frozen=True, slots=True)
class RemoteUser:
    """A user as the issuer described it. Flags are None when the issuer left them out."""

    uuid: str
    email: str | None = None
    username: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    is_admin: bool | None = None
    is_active: bool | None = None
    is_invited: bool | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    user: UserRecord
    token_uuid: str
    scopes: tuple[str, ...]
    issuer: str
    expires_at: datetime | None


def get_identity(scope_or_request: Request | dict[str, Any]) -> Identity | None:
    scope = scope_or_request.scope if isinstance(scope_or_request, Request) else scope_or_request
    return scope.get("state", {}).get(STATE_KEY)


async def foreign_identity(request: Request) -> Identity | None:
    """FastAPI dependency: the accepted foreign identity, or None."""
    return get_identity(request)
