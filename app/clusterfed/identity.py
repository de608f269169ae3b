"""What the middleware hands the host application for an accepted foreign token.

The host reads it from one place: ``request.state.federation_identity`` (the ASGI
``scope["state"]["federation_identity"]``), with :func:`get_identity`, or with the FastAPI
dependency ``clusterfed.foreign_identity`` (in :mod:`clusterfed.dependencies`). It is
absent for local tokens and anonymous requests, which are the host's business.

No web framework here: the command line and the storage layer use these records too,
and importing Starlette would cost each command a few hundredths of a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

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


def admin_here(user: UserRecord, issuer: str, *, cluster_id: str, login_cluster: str) -> bool:
    """Whether the holder of a token that ``issuer`` issued for ``user`` is an admin here.

    The one rule, for every place that asks (the host's object API as the admin API):
    the user is an active admin of this cluster or of its login cluster, and the token
    was issued by the user's own cluster. A token another cluster issued for the user (a
    login cluster user's "runtime token" from a satellite, or a local token this cluster
    made for a mirrored user) never carries admin: whoever can mint such tokens would
    otherwise hold every admin's power. A peer's user is never admin here, whatever its
    mirror row says.
    """
    if not (user.is_admin and user.is_active):
        return False
    home = user.uuid[:5]
    return issuer == home and home in (cluster_id, login_cluster)


def get_identity(scope_or_request: Any) -> Identity | None:
    """The accepted foreign identity of a request (a Starlette request or an ASGI scope)."""
    scope = scope_or_request if isinstance(scope_or_request, dict) else scope_or_request.scope
    return scope.get("state", {}).get(STATE_KEY)
