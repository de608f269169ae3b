"""Who may use the token-cache admin API and page (SPEC 3.4).

Admin = the ManagementToken, or an active local user with ``is_admin``. A remote user
is admin only when its issuer is the login cluster; the mirror rules already keep
``is_admin`` false for everyone else, and this module checks the issuer again so that
a hand-edited mirror row cannot open the door either.

No credential: 401. A valid credential that is not an admin's: 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from app.federation.config import ClusterConfig
from app.federation.errors import Forbidden, Unauthorized
from app.federation.tokens import MalformedToken, parse_token, scope_allows, secrets_equal

# local_caller is the one implementation of "this local secret is valid"; the page
# needs it for a credential that arrives in a cookie instead of the Authorization header.
from .auth import Caller, is_management_token, local_caller, resolve_caller
from .deps import ConfigDep, SessionDep


@dataclass(frozen=True, slots=True)
class Admin:
    """An authorized operator: ``user_uuid`` is None for the ManagementToken."""

    user_uuid: str | None

    @property
    def label(self) -> str:
        return self.user_uuid or "ManagementToken"


def admin_from_caller(caller: Caller, config: ClusterConfig) -> Admin:
    user = caller.user
    if caller.is_foreign(config.cluster_id) and caller.issuer != config.login_cluster:
        raise Forbidden("users of other clusters are not admins here")
    if not (user.is_admin and user.is_active):
        raise Forbidden("this needs an admin of this cluster or the ManagementToken")
    return Admin(user.uuid)


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


AdminDep = Annotated[Admin, Depends(require_admin)]
