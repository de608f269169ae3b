"""Local user records: creation, username choice, and their Arvados JSON shape."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.federation.identity import UserRecord
from app.federation.tokens import USER_TYPE, new_uuid

from ..models import User

NAME_LENGTH = 255  # email, username, first_name, last_name: String(255)
_LEADING_NON_LETTERS = re.compile(r"^[^A-Za-z]+")
_NON_ALNUM = re.compile(r"[^A-Za-z0-9]")


def username_base(username: str | None, email: str | None) -> str | None:
    """SPEC 5: the remote's username, else the email's local part cleaned up."""
    if username:
        return username
    if not email:
        return None
    local = email.split("@", 1)[0]
    return _NON_ALNUM.sub("", _LEADING_NON_LETTERS.sub("", local)) or None


def fit(value: str | None, length: int = NAME_LENGTH) -> str | None:
    """``value`` cut to a column of ``length`` characters (a peer's names may be longer)."""
    return value[:length] if value is not None else None


async def free_username(
    session: AsyncSession, base: str | None, *, exclude_uuid: str = ""
) -> str | None:
    """``base``, or ``base2``, ``base3``, ... whichever is not taken by another user.

    Each cut to fit the column: a suffix takes the place of the base's last characters.
    """
    if not base:
        return None

    def candidate(n: int) -> str:
        suffix = str(n) if n > 1 else ""
        return base[: NAME_LENGTH - len(suffix)] + suffix

    # Every candidate up to a 9-digit suffix starts with this stem.
    stem = base[: NAME_LENGTH - 9]
    rows = await session.scalars(
        select(User.username).where(User.username.like(f"{stem}%"), User.uuid != exclude_uuid)
    )
    taken = set(rows)
    n = 1
    while candidate(n) in taken:
        n += 1
    return candidate(n)


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
        username=await free_username(session, username_base(username, email)),
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
