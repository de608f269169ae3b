"""Local user records: creation and their Arvados JSON shape."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from clusterfed.identity import UserRecord
from clusterfed.server.models import User
from clusterfed.storage.users import ModelUserTable, free_username, username_base
from clusterfed.tokens import USER_TYPE, new_uuid

# The example server's users table, as clusterfed sees it (docs/mounting.md).
users_table = ModelUserTable(User)


async def get_user(session: AsyncSession, *, uuid: str) -> User | None:
    return await session.scalar(select(User).where(User.uuid == uuid))


async def create_user(
    session: AsyncSession,
    *,
    cluster_id: str,
    email: str,
    username: str | None = None,
    uuid: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    is_admin: bool = False,
    is_active: bool = False,
) -> User:
    user = User(
        uuid=uuid or new_uuid(cluster_id, USER_TYPE),
        email=email,
        username=await free_username(users_table, session, username_base(username, email)),
        first_name=first_name,
        last_name=last_name,
        is_admin=is_admin,
        is_active=is_active or is_admin,
        is_invited=is_active or is_admin,
    )
    session.add(user)
    await session.flush()
    return user


def to_record(user: User) -> UserRecord:
    return UserRecord(
        uuid=user.uuid,
        email=user.email,
        username=user.username,
        first_name=user.first_name,
        last_name=user.last_name,
        is_admin=user.is_admin,
        is_active=user.is_active,
        is_invited=user.is_invited,
    )


def user_json(user: UserRecord, *, cluster_id: str) -> dict[str, Any]:
    full_name = " ".join(part for part in (user.first_name, user.last_name) if part)
    return {
        "kind": "arvados#user",
        "uuid": user.uuid,
        "owner_uuid": f"{cluster_id}-{USER_TYPE}-000000000000000",
        "email": user.email,
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "full_name": full_name,
        "is_admin": user.is_admin,
        "is_active": user.is_active,
        "is_invited": user.is_invited,
        "prefs": {},
    }
