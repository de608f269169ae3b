"""Who may use the token-cache admin API and page (SPEC 3.4).

Admin = the ManagementToken, or an active local user with ``is_admin``. A remote user
is admin only when its issuer is the login cluster; the mirror rules already keep
``is_admin`` false for everyone else, and this module checks the issuer again so that
a hand-edited mirror row cannot open the door either.

Local tokens are the host's business: the host tells clusterfed whose a local
credential is through the ``local_user`` hook it gives ``mount`` (the example server
passes its own token lookup). Without one, only the ManagementToken and admins of the
login cluster get in.

No credential: 401. A valid credential that is not an admin's: 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

from clusterfed.credentials import bearer_credential, is_management_token
from clusterfed.errors import Forbidden, Unauthorized
from clusterfed.identity import Identity, UserRecord, get_identity
from clusterfed.service import Federation
from clusterfed.tokens import MalformedToken, parse_token, scope_allows, secrets_equal

from .deps import FederationDep

NEEDS_ADMIN = "this needs an admin's token or the ManagementToken"


@dataclass(frozen=True, slots=True)
class Admin:
    """An authorized operator: ``user_uuid`` is None for the ManagementToken."""

    user_uuid: str | None

    @property
    def label(self) -> str:
        return self.user_uuid or "ManagementToken"


def _admin_user(user: UserRecord) -> Admin:
    if not (user.is_admin and user.is_active):
        raise Forbidden("this needs an admin of this cluster or the ManagementToken")
    return Admin(user.uuid)


def _admin_from_identity(identity: Identity, federation: Federation) -> Admin:
    if identity.issuer != federation.config.login_cluster:
        raise Forbidden("users of other clusters are not admins here")
    return _admin_user(identity.user)


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
    if federation.local_user is None:
        raise Unauthorized("only the ManagementToken is accepted here")
    user = await federation.local_user(request, credential)
    if user is None:
        raise Unauthorized(NEEDS_ADMIN)
    return _admin_user(user)


AdminDep = Annotated[Admin, Depends(require_admin)]
