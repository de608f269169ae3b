"""Tokens this cluster issues."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from clusterfed.identity import UserRecord
from clusterfed.server.models import ApiClientAuthorization
from clusterfed.storage.db import utcnow
from clusterfed.storage.point_reads import PointReads
from clusterfed.storage.users import UserJoin
from clusterfed.timestamps import wire_time
from clusterfed.tokens import TOKEN_TYPE, new_secret, new_uuid

from .service import users_table


async def create_token(
    session: AsyncSession,
    *,
    cluster_id: str,
    user_uuid: str,
    expires_in: float | None = None,
    scopes: list[str] | None = None,
) -> ApiClientAuthorization:
    expires_at: datetime | None = utcnow() + timedelta(seconds=expires_in) if expires_in else None
    token = ApiClientAuthorization(
        uuid=new_uuid(cluster_id, TOKEN_TYPE),
        api_token=new_secret(),
        user_uuid=user_uuid,
        expires_at=expires_at,
        scopes=scopes or ["all"],
    )
    session.add(token)
    await session.flush()
    return token


def v2_token(token: ApiClientAuthorization) -> str:
    return f"v2/{token.uuid}/{token.api_token}"


@dataclass(frozen=True, slots=True)
class TokenWithUser:
    """A token row and its user (None: the user is gone), as one statement reads them."""

    uuid: str
    api_token: str
    user_uuid: str
    scopes: tuple[str, ...]
    expires_at: datetime | None
    user: UserRecord | None


_TOKENS = ApiClientAuthorization.__table__
_USERS = UserJoin(users_table)
_TOKEN_WITH_USER = select(
    _TOKENS.c.uuid,
    _TOKENS.c.api_token,
    _TOKENS.c.user_uuid,
    _TOKENS.c.scopes,
    _TOKENS.c.expires_at,
    *_USERS.columns,
).select_from(_USERS.onto(_TOKENS, _TOKENS.c.user_uuid))
_BY_UUID = _TOKEN_WITH_USER.where(_TOKENS.c.uuid == bindparam("uuid"))
_BY_SECRET = _TOKEN_WITH_USER.where(_TOKENS.c.api_token == bindparam("secret"))


async def find_token(
    source: PointReads | AsyncSession, *, uuid: str | None = None, secret: str | None = None
) -> TokenWithUser | None:
    """The token with ``uuid`` (else with the bare ``secret``) and its user, in one read.

    Every validation call another cluster makes lands here, and a token seen for the
    first time is read from the database: through the database's point reads it costs
    tens of microseconds on SQLite instead of two ORM queries' milliseconds. A bare
    ``AsyncSession`` runs the same statement (for callers without a running app).
    """
    statement, params = (_BY_UUID, {"uuid": uuid}) if uuid else (_BY_SECRET, {"secret": secret})
    if isinstance(source, PointReads):
        row: Any = await source.first(statement, params)
    else:
        row = (await source.execute(statement, params)).first()
    if row is None:
        return None
    return TokenWithUser(
        uuid=row.uuid,
        api_token=row.api_token,
        user_uuid=row.user_uuid,
        scopes=tuple(row.scopes),
        expires_at=row.expires_at,
        user=_USERS.record(row[5:]),
    )


async def get_token(session: AsyncSession, *, uuid: str) -> ApiClientAuthorization | None:
    return await session.scalar(
        select(ApiClientAuthorization).where(ApiClientAuthorization.uuid == uuid)
    )


async def secret_is_known(session: AsyncSession, *, secret: str) -> bool:
    """Whether ``secret`` is the bare secret of a token issued here, whatever its state."""
    found = await session.scalar(
        select(ApiClientAuthorization.id).where(ApiClientAuthorization.api_token == secret)
    )
    return found is not None


def token_json(row: ApiClientAuthorization, *, with_secret: bool = False) -> dict[str, Any]:
    """A token record as Arvados serves it; the secret only where the caller is given it
    (the answer to its creation)."""
    body: dict[str, Any] = {
        "kind": "arvados#apiClientAuthorization",
        "uuid": row.uuid,
        "owner_uuid": row.user_uuid,
        "expires_at": wire_time(row.expires_at),
        "scopes": list(row.scopes),
        "created_at": wire_time(row.created_at),
    }
    if with_secret:
        body["api_token"] = row.api_token
    return body
