"""Rows every cluster needs: its system user and its anonymous user."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.federation.tokens import anonymous_user_uuid, system_user_uuid

from .models import User
from .services.users import get_user


async def ensure_builtin_users(session: AsyncSession, cluster_id: str) -> None:
    builtins = [
        User(
            uuid=system_user_uuid(cluster_id),
            username="root",
            first_name="root",
            last_name="",
            email=None,
            is_admin=True,
            is_active=True,
            is_invited=True,
        ),
        User(
            uuid=anonymous_user_uuid(cluster_id),
            username="anonymous",
            first_name="Anonymous",
            last_name="",
            email=None,
            is_active=True,
            is_invited=True,
        ),
    ]
    for user in builtins:
        if await get_user(session, uuid=user.uuid) is None:
            session.add(user)
    await session.commit()
