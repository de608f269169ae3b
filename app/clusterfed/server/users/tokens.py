"""Tokens this cluster issues."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from clusterfed.server.models import ApiClientAuthorization
from clusterfed.storage.db import utcnow
from clusterfed.tokens import TOKEN_TYPE, new_secret, new_uuid


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


async def get_token(session: AsyncSession, *, uuid: str) -> ApiClientAuthorization | None:
    return await session.scalar(
        select(ApiClientAuthorization).where(ApiClientAuthorization.uuid == uuid)
    )


async def get_token_by_secret(
    session: AsyncSession, *, secret: str
) -> ApiClientAuthorization | None:
    return await session.scalar(
        select(ApiClientAuthorization).where(ApiClientAuthorization.api_token == secret)
    )


async def secret_is_known(session: AsyncSession, *, secret: str) -> bool:
    """Whether ``secret`` is the bare secret of a token issued here, whatever its state."""
    found = await session.scalar(
        select(ApiClientAuthorization.id).where(ApiClientAuthorization.api_token == secret)
    )
    return found is not None
