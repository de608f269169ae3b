"""The hot path's one-row reads (``storage.point_reads``) and the L2 lookup built on them:
the cheap way for each database, never a stale answer, and a busy SQLite file waited
out the asynchronous way instead of failing or holding the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clusterfed.identity import UserRecord
from clusterfed.server.users.service import users_table
from clusterfed.storage.database import Database
from clusterfed.storage.point_reads import INLINE_BUSY_MS
from clusterfed.storage.store import SqlFederationStore
from clusterfed.tokens import TOKEN_TYPE, USER_TYPE, new_uuid
from clusterfed.trust.store import CachedToken
from sqlalchemy import literal, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.support.databases import DatabaseFactory, started


class OpaqueUserTable:
    """A host's UserTable that clusterfed may not select from: two reads, not a join."""

    def __init__(self) -> None:
        self.gets = 0

    async def get(self, session: AsyncSession, uuid: str) -> UserRecord | None:
        self.gets += 1
        return await users_table.get(session, uuid)

    async def create(self, session: AsyncSession, user: UserRecord) -> None:
        await users_table.create(session, user)

    async def update(self, session: AsyncSession, user: UserRecord) -> None:
        await users_table.update(session, user)

    async def username_taken(
        self, session: AsyncSession, username: str, *, exclude_uuid: str | None = None
    ) -> bool:
        return await users_table.username_taken(session, username, exclude_uuid=exclude_uuid)

    def limits(self) -> dict[str, int]:
        return dict(users_table.limits())


def cached_token(user_uuid: str, digest: str = "d" * 64) -> CachedToken:
    now = datetime.now(UTC).replace(microsecond=0)
    return CachedToken(
        token_uuid=new_uuid("qr1hi", TOKEN_TYPE),
        user_uuid=user_uuid,
        cluster_id="qr1hi",
        secret_digest=digest,
        scopes=("GET /arvados/v1/users/current",),
        expires_at=now + timedelta(days=1),
        refreshes_at=now + timedelta(minutes=5),
        validated_at=now,
        last_used_at=now,
    )


async def add_user(database: Database, uuid: str) -> UserRecord:
    record = UserRecord(
        uuid, f"{uuid}@example", f"u{uuid[-6:]}", "First", "Last", False, True, True
    )
    async with database.transaction() as session:
        await users_table.create(session, record)
    return record


async def test_each_database_reads_and_writes_its_cheapest_way(
    databases: DatabaseFactory,
) -> None:
    async with started(databases.new_url()) as database:
        reads = {"sqlite": "inline", "postgresql": "asyncpg"}[databases.backend]
        writes = {"sqlite": "thread", "postgresql": "asyncpg"}[databases.backend]
        assert (database.reads.mode, database.writes.mode) == (reads, writes)


async def test_in_memory_sqlite_reads_and_writes_the_asynchronous_way() -> None:
    async with started("sqlite+aiosqlite:///:memory:") as database:
        assert (database.reads.mode, database.writes.mode) == ("async", "async")
        row = await database.reads.first(select(literal(7)), {})
        assert row is not None and row[0] == 7
        await database.writes.execute(text("CREATE TABLE t (x INTEGER)"), {})
        await database.writes.execute(text("INSERT INTO t VALUES (:x)"), {"x": 7})
        row = await database.reads.first(text("SELECT x FROM t"), {})
        assert row is not None and row[0] == 7


@pytest.mark.parametrize("joined", [True, False], ids=["joined", "two-reads"])
async def test_l2_row_comes_back_with_its_user_and_every_field(
    databases: DatabaseFactory, joined: bool
) -> None:
    database = Database(databases.new_url())
    await database.start()
    users: Any = users_table if joined else OpaqueUserTable()
    store = SqlFederationStore(database, users)
    try:
        user = await add_user(database, new_uuid("qr1hi", USER_TYPE))
        entry = cached_token(user.uuid)
        await store.save_token(entry)
        loaded = await store.load_token(entry.token_uuid)
        by_digest = await store.load_token_by_digest("qr1hi", entry.secret_digest)
        assert loaded == by_digest == CachedToken(**{**_fields(entry), "user": user})
        assert await store.get_user(user.uuid) == user
        # A row whose user is gone comes back without one (the validator then asks).
        orphan = cached_token(new_uuid("qr1hi", USER_TYPE), digest="e" * 64)
        await store.save_token(orphan)
        assert (await store.load_token(orphan.token_uuid)) == orphan
        assert await store.load_token(new_uuid("qr1hi", TOKEN_TYPE)) is None
        assert await store.load_token_by_digest("qr1hi", "f" * 64) is None
        assert await store.get_user(orphan.user_uuid) is None
        if not joined:
            assert users.gets > 0
    finally:
        await database.dispose()


async def test_a_forgotten_token_is_gone_for_the_very_next_read(
    databases: DatabaseFactory,
) -> None:
    # Revocation must take effect at once: the read connection holds no old snapshot.
    database = Database(databases.new_url())
    await database.start()
    store = SqlFederationStore(database, users_table)
    try:
        user = await add_user(database, new_uuid("qr1hi", USER_TYPE))
        entry = cached_token(user.uuid)
        await store.save_token(entry)
        for _ in range(3):
            assert await store.load_token(entry.token_uuid) is not None
        assert await store.forget_token(entry.token_uuid, digest=entry.secret_digest)
        assert await store.load_token(entry.token_uuid) is None
        await store.save_token(entry)
        assert await store.load_token(entry.token_uuid) is not None
    finally:
        await database.dispose()


# Only a SQLite file can be locked by another process's connection.
@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_busy_sqlite_file_is_waited_out_off_the_event_loop(
    databases: DatabaseFactory,
) -> None:
    url = databases.new_url()
    database = Database(url)
    await database.start()
    store = SqlFederationStore(database, users_table)
    try:
        user = await add_user(database, new_uuid("qr1hi", USER_TYPE))
        entry = cached_token(user.uuid)
        await store.save_token(entry)
        # Another connection takes the file for itself (as a writer leaving WAL mode
        # would), then lets go after a while. It can only while nobody else has it open.
        await database.dispose()
        holder = sqlite3.connect(url.split(":///", 1)[1], check_same_thread=False)
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("UPDATE users SET first_name = first_name")
        released = threading.Event()
        hold_seconds = 0.5

        def release() -> None:
            time.sleep(hold_seconds)
            holder.rollback()
            holder.execute("PRAGMA locking_mode=NORMAL")
            holder.execute("SELECT 1").fetchall()  # drops the exclusive lock
            holder.close()
            released.set()

        threading.Thread(target=release, daemon=True).start()
        await database.start()
        # The loop stays free while the read waits: a ticker keeps ticking.
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while not released.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(ticker())
        started = time.monotonic()
        loaded = await store.load_token(entry.token_uuid)
        waited = time.monotonic() - started
        await ticking
        assert loaded is not None and loaded.user == user
        assert waited >= hold_seconds * 0.8  # it did wait for the lock...
        assert ticks >= 10  # ...without holding the loop (inline reads give up after
        assert INLINE_BUSY_MS < 100  # a few milliseconds)
    finally:
        await database.dispose()


def _fields(entry: CachedToken) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in entry.__slots__}  # type: ignore[attr-defined]


async def test_saving_a_token_again_replaces_every_column_but_its_uuid(
    databases: DatabaseFactory,
) -> None:
    # The prebuilt upsert (storage.upsert): one statement for every row, both dialects.
    database = Database(databases.new_url())
    await database.start()
    store = SqlFederationStore(database, users_table)
    try:
        first = await add_user(database, new_uuid("qr1hi", USER_TYPE))
        second = await add_user(database, new_uuid("qr1hi", USER_TYPE))
        entry = cached_token(first.uuid)
        await store.save_token(entry)
        later = entry.validated_at + timedelta(minutes=1)
        replaced = CachedToken(
            token_uuid=entry.token_uuid,
            user_uuid=second.uuid,
            cluster_id="qr1hi",
            secret_digest="9" * 64,
            scopes=("all",),
            expires_at=None,
            refreshes_at=later + timedelta(minutes=5),
            validated_at=later,
            last_used_at=later,
        )
        await store.save_token(replaced)
        loaded = await store.load_token(entry.token_uuid)
        assert loaded == CachedToken(**{**_fields(replaced), "user": second})
    finally:
        await database.dispose()
