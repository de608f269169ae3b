"""Who may use the token-cache admin API and page (SPEC 3.4).

Admin = the ManagementToken, or an active local user with ``is_admin``. A remote user
is admin only when its issuer is the login cluster; the mirror rules already keep
``is_admin`` false for everyone else, and this module checks the issuer again so that
a hand-edited mirror row cannot open the door either.

No credential: 401. A valid credential that is not an admin's: 403.

The admin page's session (``admin_session``) stands for a credential checked at login;
``admin_for_session`` re-verifies on every request what it names, without the secret: the
token still exists here and has not expired (for a login cluster's token: its cache entry
is still fresh), its user is still an admin, its scopes allow the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from app.federation.config import ClusterConfig
from app.federation.errors import Forbidden, Unauthorized
from app.federation.tokens import (
    MalformedToken,
    parse_token,
    scope_allows,
    secrets_equal,
    system_user_uuid,
)

from .admin_session import AdminSession, Kind

# local_caller is the one implementation of "this local secret is valid"; the page
# needs it for a credential that arrives in a cookie instead of the Authorization header.
from .auth import Caller, is_management_token, local_caller, resolve_caller
from .db import utcnow
from .deps import ConfigDep, SessionDep
from .models import FederationTokenCache
from .services.tokens import get_token
from .services.users import get_user, to_record


@dataclass(frozen=True, slots=True)
class Admin:
    """An authorized operator: ``user_uuid`` is None for the ManagementToken.

    ``token_uuid`` and ``expires_at`` name the token the operator presented (None for the
    ManagementToken and the SystemRootToken): what an admin page session stands for.
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


def admin_from_caller(caller: Caller, config: ClusterConfig) -> Admin:
    user = caller.user
    if caller.is_foreign(config.cluster_id) and caller.issuer != config.login_cluster:
        raise Forbidden("users of other clusters are not admins here")
    if not (user.is_admin and user.is_active):
        raise Forbidden("this needs an admin of this cluster or the ManagementToken")
    return Admin(user.uuid, caller.token_uuid, caller.expires_at)


async def require_admin(request: Request, session: SessionDep, config: ConfigDep) -> Admin:
    """FastAPI dependency for the admin API: the credential is the Authorization header."""
    if is_management_token(request, config):
        return Admin(None)
    caller = await resolve_caller(request, session, config)
    if caller is None:
        raise Unauthorized("this needs an admin's token or the ManagementToken")
    return admin_from_caller(caller, config)


async def admin_for_credential(
    credential: str, *, request: Request, session: AsyncSession, config: ClusterConfig
) -> Admin:
    """The same decision for a credential held outside the headers (the page's cookie)."""
    if config.management_token and secrets_equal(credential, config.management_token):
        return Admin(None)
    try:
        token = parse_token(credential)
    except MalformedToken:
        raise Unauthorized("this needs an admin's token or the ManagementToken") from None
    method, path = request.method.upper(), request.url.path
    if token.issuer not in (None, config.cluster_id):
        identity = await request.app.state.federation.identify(token)
        caller = Caller(
            identity.user,
            identity.token_uuid,
            identity.scopes,
            identity.issuer,
            identity.expires_at,
        )
    else:
        caller = await local_caller(token, request, session, config)
        if caller.salted_for:
            raise Unauthorized("a salted token is only accepted by the validation endpoints")
    if not scope_allows(caller.scopes, method, path):
        raise Forbidden(f"token scopes do not allow {method} {path}")
    return admin_from_caller(caller, config)


async def admin_for_session(
    admin_session: AdminSession, *, request: Request, session: AsyncSession, config: ClusterConfig
) -> Admin:
    """What a page session stands for, checked again now (no secret is needed for it)."""
    ended = Unauthorized("your admin session has ended; log in again")
    if admin_session.kind == "management":
        if not config.management_token:
            raise ended
        return Admin(None)
    if admin_session.kind == "system":
        user = await get_user(session, uuid=system_user_uuid(config.cluster_id))
        if not config.system_root_token or user is None:
            raise ended
        caller = Caller(to_record(user), None, ("all",), config.cluster_id, None)
        return admin_from_caller(caller, config)
    token_uuid = admin_session.token_uuid or ""
    now = utcnow()
    if token_uuid[:5] == config.cluster_id:
        record = await get_token(session, uuid=token_uuid)
        if record is None or (record.expires_at is not None and record.expires_at <= now):
            raise ended  # revoked or expired since the login
        user_uuid, scopes, issuer = record.user_uuid, record.scopes, config.cluster_id
        expires_at = record.expires_at
    else:
        # A login cluster's token: what this cluster knows of it is its cache entry, fresh
        # for RemoteTokenRefresh after its last validation, dropped when purged or revoked.
        cached = await session.get(FederationTokenCache, token_uuid)
        if cached is None or not (
            now < cached.refreshes_at and (cached.expires_at is None or now < cached.expires_at)
        ):
            raise ended
        user_uuid, scopes, issuer = cached.user_uuid, cached.scopes, cached.cluster_id
        expires_at = cached.expires_at
    user = await get_user(session, uuid=user_uuid)
    if user is None or user.uuid != admin_session.user_uuid:
        raise ended
    caller = Caller(to_record(user), token_uuid, tuple(scopes), issuer, expires_at)
    method, path = request.method.upper(), request.url.path
    if not scope_allows(caller.scopes, method, path):
        raise Forbidden(f"token scopes do not allow {method} {path}")
    return admin_from_caller(caller, config)


AdminDep = Annotated[Admin, Depends(require_admin)]
