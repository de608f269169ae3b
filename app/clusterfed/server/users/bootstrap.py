"""Rows every cluster needs: its system user and its anonymous user."""

from __future__ import annotations

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from clusterfed.server.models import User
from clusterfed.storage.upsert import insert_for
from clusterfed.tokens import anonymous_user_uuid, system_user_uuid


async def ensure_builtin_users(session: AsyncSession, cluster_id: str) -> None:
    """Create them if missing. Every worker of ``serve --workers N`` runs this at startup
    at the same moment, so it is an insert that ignores conflicts, not check-then-insert
    (which lets two workers both see "missing" and one of them die on the unique key)."""
    builtins = [
        {
            "uuid": system_user_uuid(cluster_id),
            "username": "root",
            "first_name": "root",
            "is_admin": True,
        },
        {
            "uuid": anonymous_user_uuid(cluster_id),
            "username": "anonymous",
            "first_name": "Anonymous",
            "is_admin": False,
        },
    ]
    for values in builtins:
        statement = insert_for(session, User).values(
            **values,
            last_name="",
            email=None,
            is_active=True,
            is_invited=True,
            created_at=func.now(),
            modified_at=func.now(),
        )
        await session.execute(statement.on_conflict_do_nothing())
    await session.commit()
