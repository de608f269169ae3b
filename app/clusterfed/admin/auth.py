"""Who may use the token-cache admin API and page (docs/operating.md#admin-api).

Admin = the ManagementToken, or a credential that ``clusterfed.identity.admin_here``
says carries admin: an active admin of this cluster or of its login cluster, through a
token their own cluster issued. The same rule decides for the host's own endpoints, so
a login cluster user's runtime token from a satellite is admin nowhere, and a
hand-edited mirror row of a peer's user cannot open the door either.

Local tokens are the host's business: the host says whose a local credential is through
the ``LocalCredentials`` it gives ``mount`` (the example server passes its own token
lookup). Without one, only the ManagementToken and admins of the login cluster get in.

The admin page's session (``admin.session``) stands for a credential checked at login;
``admin_for_session`` re-verifies on every request what it names, without the secret: the
token is still valid (a local one: the host's ``recheck``; a login cluster's: its cache
entry is still fresh), its user is still an admin, its scopes allow the page.

No credential: 401. A valid credential that is not an admin's: 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from clusterfed.credentials import bearer_credential, is_management_token
from clusterfed.errors import Forbidden, Unauthorized
from clusterfed.identity import Identity, UserRecord, admin_here, get_identity
from clusterfed.service import Federation, LocalLogin
from clusterfed.storage.db import utcnow
from clusterfed.storage.models import FederationTokenCache
from clusterfed.tokens import MalformedToken, parse_token, scope_allows, secrets_equal, uuid_cluster

from .deps import FederationDep
from .session import AdminSession, Kind

NEEDS_ADMIN = "this needs an admin's token or the ManagementToken"


@dataclass(frozen=True, slots=True)
class Admin:
    """An authorized operator: ``user_uuid`` is None for the ManagementToken.

    ``token_uuid`` and ``expires_at`` name the token the operator presented (None for the
    ManagementToken and a credential with no token record): what a page session stands for.
    """

    user_uuid: str | None
    token_uuid: str | None = None
    expires_at: datetime | None = None

    @property
    def label(self) -> str:
        return self.user_uuid or "ManagementToken"

    @property
    def kind(self) -> Kind:
        if self.user_uuid is None:
            return "management"
        return "system" if self.token_uuid is None else "token"


def _admin_user(
    user: UserRecord,
    issuer: str,
    token_uuid: str | None,
    expires_at: datetime | None,
    federation: Federation,
) -> Admin:
    config = federation.config
    if not admin_here(
        user, issuer, cluster_id=config.cluster_id, login_cluster=config.login_cluster
    ):
        if user.uuid[:5] not in (config.cluster_id, config.login_cluster):
            raise Forbidden("users of other clusters are not admins here")
        raise Forbidden("this needs an admin of this cluster or the ManagementToken")
    return Admin(user.uuid, token_uuid, expires_at)


def _admin_from_identity(identity: Identity, federation: Federation) -> Admin:
    return _admin_user(
        identity.user, identity.issuer, identity.token_uuid, identity.expires_at, federation
    )


def _admin_from_login(login: LocalLogin, request: Request, federation: Federation) -> Admin:
    method, path = request.method.upper(), request.url.path
    if not scope_allows(login.scopes, method, path):
        raise Forbidden(f"token scopes do not allow {method} {path}")
    issuer = federation.config.cluster_id  # a local credential: this cluster issued it
    return _admin_user(login.user, issuer, login.token_uuid, login.expires_at, federation)


async def require_admin(request: Request, federation: FederationDep) -> Admin:
    """FastAPI dependency for the admin API: the credential is the Authorization header."""
    header = request.headers.get("authorization")
    if is_management_token(header, federation.config.management_token):
        return Admin(None)
    identity = get_identity(request)
    if identity is not None:  # a foreign token the middleware already accepted
        return _admin_from_identity(identity, federation)
    credential = bearer_credential(header) if header is not None else None
    if credential is None:
        raise Unauthorized(NEEDS_ADMIN)
    return await admin_for_credential(credential, request=request, federation=federation)


async def admin_for_credential(
    credential: str, *, request: Request, federation: Federation
) -> Admin:
    """The same decision for a credential held outside the headers (the page's login)."""
    config = federation.config
    if config.management_token and secrets_equal(credential, config.management_token):
        return Admin(None)
    try:
        token = parse_token(credential)
    except MalformedToken:
        raise Unauthorized(NEEDS_ADMIN) from None
    if token.issuer not in (None, config.cluster_id):
        identity = await federation.identify(token)
        method, path = request.method.upper(), request.url.path
        if not scope_allows(identity.scopes, method, path):
            raise Forbidden(f"token scopes do not allow {method} {path}")
        return _admin_from_identity(identity, federation)
    if federation.local_credentials is None:
        raise Unauthorized("only the ManagementToken is accepted here")
    login = await federation.local_credentials.login(request, credential)
    if login is None:
        raise Unauthorized(NEEDS_ADMIN)
    return _admin_from_login(login, request, federation)


async def admin_for_session(
    admin_session: AdminSession, *, request: Request, session: AsyncSession, federation: Federation
) -> Admin:
    """What a page session stands for, checked again now (no secret is needed for it)."""
    config = federation.config
    ended = Unauthorized("your admin session has ended; log in again")
    if admin_session.kind == "management":
        if not config.management_token:
            raise ended
        return Admin(None)
    token_uuid, user_uuid = admin_session.token_uuid, admin_session.user_uuid or ""
    if token_uuid is None or uuid_cluster(token_uuid) == config.cluster_id:
        if federation.local_credentials is None:
            raise ended
        login = await federation.local_credentials.recheck(request, token_uuid, user_uuid)
        if login is None or login.user.uuid != user_uuid:
            raise ended  # revoked or expired since the login
        return _admin_from_login(login, request, federation)
    # A login cluster's token: what this cluster knows of it is its cache entry, fresh for
    # RemoteTokenRefresh after its last validation, dropped when purged or revoked.
    cached = await session.get(FederationTokenCache, token_uuid)
    now = utcnow()
    if cached is None or not (
        now < cached.refreshes_at and (cached.expires_at is None or now < cached.expires_at)
    ):
        raise ended
    user = await federation.store.get_user(cached.user_uuid)
    if user is None or user.uuid != user_uuid:
        raise ended
    identity = Identity(
        user, token_uuid, tuple(cached.scopes), cached.cluster_id, cached.expires_at
    )
    method, path = request.method.upper(), request.url.path
    if not scope_allows(identity.scopes, method, path):
        raise Forbidden(f"token scopes do not allow {method} {path}")
    return _admin_from_identity(identity, federation)


AdminDep = Annotated[Admin, Depends(require_admin)]
