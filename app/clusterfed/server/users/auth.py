"""Who is calling: the host's side of authentication.

Foreign tokens were already validated by the federation middleware, which leaves an
``Identity`` in the request state. Local tokens are resolved here against the tokens
table: with their own secret, or (when ``remote=R`` names another cluster) with the
secret salted for R. A token accepted only through its salted form may reach the
endpoints in ``SALTED_TOKEN_ROUTES`` and nothing else (docs/protocol.md#validation-endpoints).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from clusterfed.config import ClusterConfig
from clusterfed.credentials import parse_authorization
from clusterfed.errors import Forbidden, Unauthorized
from clusterfed.identity import UserRecord, admin_here, get_identity
from clusterfed.service import LocalLogin
from clusterfed.storage.db import utcnow
from clusterfed.tokens import (
    MalformedToken,
    Token,
    is_cluster_id,
    parse_token,
    salted_secret,
    scope_allows,
    secrets_equal,
    system_user_uuid,
)
from clusterfed.trust.local_tokens import LocalTokenCache

from .service import get_user, to_record
from .tokens import find_token, get_token

SALTED_TOKEN_ROUTES = frozenset(
    {
        ("GET", "/arvados/v1/api_client_authorizations/current"),
        ("GET", "/arvados/v1/users/current"),
        ("GET", "/arvados/v1/groups"),
        ("POST", "/federation/v1/permission_checks"),
    }
)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling. ``is_admin`` is the one answer to "is this caller an admin here?"
    (``clusterfed.identity.admin_here``, taken once when the caller is resolved): every
    endpoint reads it, never ``user.is_admin``, which says what the user is at home."""

    user: UserRecord
    token_uuid: str | None
    scopes: tuple[str, ...]
    issuer: str
    expires_at: datetime | None
    salted_for: str | None = None  # the remote a salted-only local token was accepted for
    is_admin: bool = False

    @classmethod
    def of(
        cls,
        config: ClusterConfig,
        user: UserRecord,
        token_uuid: str | None,
        scopes: tuple[str, ...],
        issuer: str,
        expires_at: datetime | None,
        salted_for: str | None = None,
    ) -> Caller:
        admin = admin_here(
            user, issuer, cluster_id=config.cluster_id, login_cluster=config.login_cluster
        )
        return cls(user, token_uuid, scopes, issuer, expires_at, salted_for, admin)

    def is_foreign(self, cluster_id: str) -> bool:
        return self.issuer != cluster_id


async def resolve_caller(
    request: Request, session: AsyncSession, config: ClusterConfig
) -> Caller | None:
    """The caller, or None for an anonymous request. Raises 401/403 for bad credentials."""
    identity = get_identity(request)
    if identity is not None:
        return Caller.of(
            config,
            identity.user,
            identity.token_uuid,
            identity.scopes,
            identity.issuer,
            identity.expires_at,
        )
    try:
        token = parse_authorization(request.headers.get("authorization"))
    except MalformedToken as exc:
        raise Unauthorized(f"malformed credential: {exc}") from None
    if token is None:
        return None
    if token.issuer not in (None, config.cluster_id):
        # Only the federation middleware may accept a foreign token.
        raise Unauthorized("token was not issued by this cluster and is not accepted here")
    caller = await cached_local_caller(token, request, session, config)
    method, path = request.method.upper(), request.url.path
    if (
        caller.salted_for
        and (method if method != "HEAD" else "GET", path) not in SALTED_TOKEN_ROUTES
    ):
        raise Unauthorized("a salted token is only accepted by the federation validation endpoints")
    if not (scope_allows(caller.scopes, method, path) or _is_validation_call(request)):
        raise Forbidden(f"token scopes do not allow {method} {path}")
    return caller


def _is_validation_call(request: Request) -> bool:
    """``GET users/current?remote=R``: another cluster validating this token
    (docs/protocol.md#accepting-a-foreign-token). Scopes do not stop it, or a scoped token
    could never be used elsewhere; it reveals nothing but the token owner's own record."""
    return (
        request.method in ("GET", "HEAD")
        and request.url.path == "/arvados/v1/users/current"
        and is_cluster_id(request.query_params.get("remote", ""))
    )


async def cached_local_caller(
    token: Token, request: Request, session: AsyncSession, config: ClusterConfig
) -> Caller:
    """``local_caller``, answered from the federation's ``LocalTokenCache`` when it can.

    Only successes are kept. A revocation logs a token purge, which empties the entry in
    every worker (``Federation.invalidate``). Another cluster validating the token
    (``remote=`` naming it) always reads the database: what a remote caches is then as
    fresh as the tokens table when it asked, and its ``RemoteTokenRefresh`` stays the
    only delay, whatever changed the row.
    """
    app = request.scope.get("app")  # absent for a bare Request (no app to cache in)
    federation = getattr(app.state, "federation", None) if app is not None else None
    cache: LocalTokenCache[object] | None = federation.local_tokens if federation else None
    remote = request.query_params.get("remote", "")
    if cache is None or not cache.enabled or remote not in ("", config.cluster_id):
        return await local_caller(token, request, session, config)
    key = cache.key(token.encode(), remote)
    cached = cache.get(key)
    if isinstance(cached, Caller):
        return cached
    generation = cache.generation  # before the database is read: see LocalTokenCache
    caller = await local_caller(token, request, session, config)
    expires_at = caller.expires_at.timestamp() if caller.expires_at is not None else None
    cache.put(
        key,
        caller,
        token_uuid=caller.token_uuid,
        user_uuid=caller.user.uuid,
        expires_at=expires_at,
        generation=generation,
    )
    return caller


async def local_caller(
    token: Token, request: Request, session: AsyncSession, config: ClusterConfig
) -> Caller:
    if (
        token.uuid is None
        and config.system_root_token
        and secrets_equal(token.secret, config.system_root_token)
    ):
        return await _system_caller(session, config)
    database = getattr(request.app.state, "database", None) if "app" in request.scope else None
    source = database.reads if database is not None and database.started else session
    record = await find_token(source, uuid=token.uuid, secret=token.secret)
    if record is None:
        raise Unauthorized("token is not valid on this cluster")
    salted_for: str | None = None
    if not secrets_equal(token.secret, record.api_token):
        remote = request.query_params.get("remote", "")
        if not (
            token.uuid
            and is_cluster_id(remote)
            and secrets_equal(token.secret, salted_secret(record.api_token, remote))
        ):
            raise Unauthorized("token is not valid on this cluster")
        if not config.accepts_salted_for(remote):
            raise Unauthorized(
                f"a token salted for {remote} is not accepted here: "
                f"{config.cluster_id} does not federate with {remote}"
            )
        salted_for = remote
    if record.expires_at is not None and record.expires_at <= utcnow():
        raise Unauthorized("token has expired")
    if record.user is None:
        raise Unauthorized("token's user does not exist")
    return Caller.of(
        config,
        record.user,
        record.uuid,
        record.scopes,
        config.cluster_id,
        record.expires_at,
        salted_for,
    )


async def _system_caller(session: AsyncSession, config: ClusterConfig) -> Caller:
    user = await get_user(session, uuid=system_user_uuid(config.cluster_id))
    if user is None:
        raise Unauthorized("system user is missing; run `clusterfed db upgrade`")
    return Caller.of(config, to_record(user), None, ("all",), config.cluster_id, None)


class LocalCredentials:
    """The example server's ``clusterfed.LocalCredentials``: its own token table answers
    for the admin API and page, by the same rules as every other endpoint (a token
    accepted only salted is refused there)."""

    async def login(self, request: Request, credential: str) -> LocalLogin | None:
        try:
            token = parse_token(credential)
        except MalformedToken:
            return None
        config: ClusterConfig = request.app.state.config
        async with request.app.state.database.sessionmaker() as session:
            caller = await local_caller(token, request, session, config)
        if caller.salted_for:
            raise Unauthorized("a salted token is only accepted by the validation endpoints")
        return LocalLogin(caller.user, caller.token_uuid, caller.expires_at, caller.scopes)

    async def recheck(
        self, request: Request, token_uuid: str | None, user_uuid: str
    ) -> LocalLogin | None:
        config: ClusterConfig = request.app.state.config
        async with request.app.state.database.sessionmaker() as session:
            if token_uuid is None:  # the SystemRootToken: valid while it is configured
                if not config.system_root_token:
                    return None
                caller = await _system_caller(session, config)
                return LocalLogin(caller.user, None, None, caller.scopes)
            record = await get_token(session, uuid=token_uuid)
            if record is None or record.user_uuid != user_uuid:
                return None
            if record.expires_at is not None and record.expires_at <= utcnow():
                return None
            user = await get_user(session, uuid=user_uuid)
            if user is None:
                return None
            return LocalLogin(to_record(user), record.uuid, record.expires_at, tuple(record.scopes))
