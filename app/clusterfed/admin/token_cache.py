"""The federation token cache as operators see it: list, show, purge (docs/operating.md#admin-api).

The admin API, the admin page and ``clusterfed cache`` all go through this module, so
there is one definition of an entry's state and one way to purge. A purge deletes the
matching L2 rows and logs a ``FederationPurge`` row in the same transaction: every
worker polls that log and drops its own L1 entries, which is what makes a purge reach
processes that share nothing but the database. Nothing here ever reads out the
``secret_digest`` column.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from sqlalchemy import ColumnElement, and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from clusterfed.storage.db import utcnow
from clusterfed.storage.models import FederationPurge, FederationTokenCache
from clusterfed.tokens import TOKEN_TYPE, USER_TYPE, is_cluster_id, is_uuid

State = Literal["fresh", "refresh_due", "expired"]
PurgeKind = Literal["token", "cluster", "user", "all"]
STATES: tuple[State, ...] = ("fresh", "refresh_due", "expired")

# Every column but secret_digest: the digest is selected nowhere, so no code path built
# on this module can leak it by accident.
_PUBLIC_COLUMNS = (
    FederationTokenCache.token_uuid,
    FederationTokenCache.user_uuid,
    FederationTokenCache.cluster_id,
    FederationTokenCache.scopes,
    FederationTokenCache.expires_at,
    FederationTokenCache.refreshes_at,
    FederationTokenCache.validated_at,
    FederationTokenCache.last_used_at,
)


class InvalidPurge(ValueError):
    """A purge target of the wrong shape; the message names what was expected."""


class L1Invalidator(Protocol):
    """What a purge needs of the running ``Federation``: drop this process's L1 entries."""

    def invalidate(self, kind: str, value: str | None = None) -> int: ...


@dataclass(frozen=True, slots=True)
class CacheEntry:
    token_uuid: str
    user_uuid: str
    cluster_id: str
    scopes: tuple[str, ...]
    expires_at: datetime | None
    refreshes_at: datetime
    validated_at: datetime
    last_used_at: datetime
    state: State


def entry_state(*, expires_at: datetime | None, refreshes_at: datetime, now: datetime) -> State:
    """The token cache's freshness rule, with expiry taking precedence over a due refresh."""
    if expires_at is not None and expires_at <= now:
        return "expired"
    return "fresh" if now < refreshes_at else "refresh_due"


def _state_condition(state: State, now: datetime) -> ColumnElement[bool]:
    table = FederationTokenCache
    expired = and_(table.expires_at.is_not(None), table.expires_at <= now)
    not_expired = or_(table.expires_at.is_(None), table.expires_at > now)
    if state == "expired":
        return expired
    if state == "fresh":
        return and_(not_expired, table.refreshes_at > now)
    return and_(not_expired, table.refreshes_at <= now)


def _filters(
    *, cluster_id: str | None, user_uuid: str | None, state: State | None, now: datetime
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if cluster_id is not None:
        conditions.append(FederationTokenCache.cluster_id == cluster_id)
    if user_uuid is not None:
        conditions.append(FederationTokenCache.user_uuid == user_uuid)
    if state is not None:
        conditions.append(_state_condition(state, now))
    return conditions


def _entry(row: object, now: datetime) -> CacheEntry:
    (token_uuid, user_uuid, cluster_id, scopes, expires_at, refreshes_at, validated_at, used_at) = (
        row  # type: ignore[misc]
    )
    return CacheEntry(
        token_uuid=token_uuid,
        user_uuid=user_uuid,
        cluster_id=cluster_id,
        scopes=tuple(scopes or ()),
        expires_at=expires_at,
        refreshes_at=refreshes_at,
        validated_at=validated_at,
        last_used_at=used_at,
        state=entry_state(expires_at=expires_at, refreshes_at=refreshes_at, now=now),
    )


async def list_entries(
    session: AsyncSession,
    *,
    cluster_id: str | None = None,
    user_uuid: str | None = None,
    state: State | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[CacheEntry], int]:
    """One page of entries (newest validation first) and how many match in all."""
    now = utcnow()
    conditions = _filters(cluster_id=cluster_id, user_uuid=user_uuid, state=state, now=now)
    total = await session.scalar(
        select(func.count()).select_from(FederationTokenCache).where(*conditions)
    )
    rows = await session.execute(
        select(*_PUBLIC_COLUMNS)
        .where(*conditions)
        .order_by(FederationTokenCache.validated_at.desc(), FederationTokenCache.token_uuid)
        .limit(limit)
        .offset(offset)
    )
    return [_entry(row, now) for row in rows], total or 0


async def get_entry(session: AsyncSession, *, token_uuid: str) -> CacheEntry | None:
    row = (
        await session.execute(
            select(*_PUBLIC_COLUMNS).where(FederationTokenCache.token_uuid == token_uuid)
        )
    ).first()
    return _entry(row, utcnow()) if row is not None else None


async def count_by_cluster(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(FederationTokenCache.cluster_id, func.count()).group_by(
            FederationTokenCache.cluster_id
        )
    )
    return {cluster_id: count for cluster_id, count in rows}


def check_purge_target(kind: str, value: str | None) -> None:
    """Refuse a target that cannot name anything, before touching the database."""
    expected = {
        "token": (lambda v: is_uuid(v, type_=TOKEN_TYPE), f"a token UUID (xxxxx-{TOKEN_TYPE}-...)"),
        "user": (lambda v: is_uuid(v, type_=USER_TYPE), f"a user UUID (xxxxx-{USER_TYPE}-...)"),
        "cluster": (is_cluster_id, "a cluster ID (5 characters of [a-z0-9])"),
    }
    if kind == "all":
        if value is not None:
            raise InvalidPurge("a purge of everything takes no value")
        return
    if kind not in expected:
        raise InvalidPurge(f"unknown purge kind {kind!r}")
    check, description = expected[kind]
    if not check(value):
        raise InvalidPurge(f"{kind} purge needs {description}")


async def purge(
    session: AsyncSession,
    *,
    kind: PurgeKind,
    value: str | None = None,
    federation: L1Invalidator | None = None,
) -> int:
    """Delete matching L2 rows, log the purge for every worker, drop this process's L1.

    Commits the session: the L1 of this process is only cleared after the deletion is
    visible, or a concurrent request here could refill L1 from the doomed L2 row.
    ``federation`` is None in the CLI, which has no L1; the workers read the log.
    Returns how many L2 rows were deleted.
    """
    check_purge_target(kind, value)
    statement = delete(FederationTokenCache)
    column = {
        "token": FederationTokenCache.token_uuid,
        "cluster": FederationTokenCache.cluster_id,
        "user": FederationTokenCache.user_uuid,
    }.get(kind)
    if column is not None:
        statement = statement.where(column == value)
    result = await session.execute(statement)
    session.add(FederationPurge(kind=kind, value=value))
    await session.commit()
    if federation is not None:
        federation.invalidate(kind, value)
    return result.rowcount or 0  # type: ignore[attr-defined]
