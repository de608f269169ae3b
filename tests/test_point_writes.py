"""The hot path's one-statement writes (``storage.point_writes``): the cheap way for each
database, committed when the await returns, a busy SQLite file waited out off the event
loop, errors raised to the writer, and no write lost beside the async engine's writers."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from dataclasses import replace
from typing import Any

import pytest
from clusterfed.identity import RemoteUser
from clusterfed.server.users.service import users_table
from clusterfed.storage.database import Database
from clusterfed.storage.store import SqlFederationStore
from clusterfed.tokens import USER_TYPE, new_uuid
from clusterfed.trust.mirroring import MirrorPolicy
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.support.databases import DatabaseFactory, started
from tests.test_point_reads import add_user, cached_token


async def test_a_write_is_committed_when_the_await_returns(databases: DatabaseFactory) -> None:
    # Seen at once by another connection: the point reads' and the async engine's.
    async with started(databases.new_url()) as database:
        store = SqlFederationStore(database, users_table)
        user = await add_user(database, new_uuid("qr1hi", USER_TYPE))
        entry = cached_token(user.uuid)
        await store.save_token(entry)
        assert await store.load_token(entry.token_uuid) is not None
        async with database.sessionmaker() as session:
            count = await session.scalar(
                text("SELECT count(*) FROM federation_token_cache WHERE token_uuid = :u"),
                {"u": entry.token_uuid},
            )
        assert count == 1


async def test_a_failed_write_raises_to_its_writer_and_the_next_one_works(
    databases: DatabaseFactory,
) -> None:
    async with started(databases.new_url()) as database:
        store = SqlFederationStore(database, users_table)
        with pytest.raises(DBAPIError):
            await database.writes.execute(text("INSERT INTO no_such_table VALUES (1)"), {})
        user = await add_user(database, new_uuid("qr1hi", USER_TYPE))
        entry = cached_token(user.uuid)
        await store.save_token(entry)
        assert await store.load_token(entry.token_uuid) is not None


async def test_no_write_is_lost_beside_the_async_engines_writers(
    databases: DatabaseFactory,
) -> None:
    # Token rows through the point writes and users through the async engine, all at
    # once: on SQLite both are writers of one file and wait for each other's locks.
    async with started(databases.new_url()) as database:
        store = SqlFederationStore(database, users_table)
        owner = await add_user(database, new_uuid("qr1hi", USER_TYPE))
        entries = [cached_token(owner.uuid, digest=f"{n:064x}") for n in range(60)]
        new_users = [new_uuid("qr1hi", USER_TYPE) for _ in range(20)]
        await asyncio.gather(
            *(store.save_token(entry) for entry in entries),
            *(add_user(database, uuid) for uuid in new_users),
        )
        for entry in entries:
            assert await store.load_token(entry.token_uuid) is not None
        for uuid in new_users:
            assert await store.get_user(uuid) is not None


# Only a SQLite file is locked by another connection for a whole transaction this way.
@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_write_waits_out_another_writer_off_the_event_loop(
    databases: DatabaseFactory,
) -> None:
    url = databases.new_url()
    async with started(url) as database:
        store = SqlFederationStore(database, users_table)
        user = await add_user(database, new_uuid("qr1hi", USER_TYPE))
        holder = sqlite3.connect(url.split(":///", 1)[1], check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")  # another process's writer, mid-transaction
        released = threading.Event()
        hold_seconds = 0.5

        def release() -> None:
            time.sleep(hold_seconds)
            holder.commit()
            holder.close()
            released.set()

        threading.Thread(target=release, daemon=True).start()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while not released.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(ticker())
        entry = cached_token(user.uuid)
        began = time.monotonic()
        await store.save_token(entry)
        waited = time.monotonic() - began
        await ticking
        assert waited >= hold_seconds * 0.8  # it did wait for the lock...
        assert ticks >= 10  # ...and the loop went on meanwhile
        assert await store.load_token(entry.token_uuid) is not None


# Only a SQLite file has a per-connection choice of syncing each commit to disk.
@pytest.mark.parametrize("backend", ["sqlite"])
async def test_cache_rows_skip_the_disk_sync_and_everything_else_keeps_it(
    databases: DatabaseFactory,
) -> None:
    # Each write records the synchronous setting of the connection that ran it.
    async with started(databases.new_url()) as database:
        writes = database.writes
        await writes.execute(text("CREATE TABLE probe (kind TEXT, synchronous INTEGER)"), {})
        record = "INSERT INTO probe SELECT :kind, synchronous FROM pragma_synchronous"
        await writes.execute(text(record), {"kind": "cache"}, durable=False)
        await writes.execute(text(record), {"kind": "durable"})
        async with database.sessionmaker() as session:
            rows = dict((await session.execute(text("SELECT kind, synchronous FROM probe"))).all())
        assert rows == {"cache": 1, "durable": 2}  # NORMAL, FULL
        # The token cache's rows are the cache kind; both kinds are committed at once.
        store = SqlFederationStore(database, users_table)
        user = await add_user(database, new_uuid("qr1hi", USER_TYPE))
        entry = cached_token(user.uuid)
        calls: list[bool] = []
        execute = writes.execute

        async def spy(statement: object, params: object, *, durable: bool = True) -> None:
            calls.append(durable)
            await execute(statement, params, durable=durable)  # type: ignore[arg-type]

        writes.execute = spy  # type: ignore[method-assign]
        await store.save_token(entry)
        assert calls == [False]
        assert await store.load_token(entry.token_uuid) is not None


class CountedStatements:
    """Counts the point reads and writes a piece of work makes."""

    def __init__(self, database: Database) -> None:
        self.count = 0
        for target, name in (
            (database.reads, "first"),
            (database.writes, "execute"),
        ):
            self._wrap(target, name)

    def _wrap(self, target: object, name: str) -> None:
        original = getattr(target, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await original(*args, **kwargs)

        setattr(target, name, counted)


@pytest.mark.parametrize("change", ["unchanged", "new", "renamed"])
async def test_a_validation_saves_its_token_with_the_mirror_as_it_now_is(
    databases: DatabaseFactory, change: str
) -> None:
    # The validator's last step: mirror the issuer's user and save the token's row. An
    # unchanged mirror is the common case: a read and the row's write, nothing more.
    async with started(databases.new_url()) as database:
        store = SqlFederationStore(database, users_table)
        policy = MirrorPolicy(login=False, trusted=True, autosetup=False)
        uuid = new_uuid("qr1hi", USER_TYPE)
        first = RemoteUser(uuid, "ada@example", "ada", "Ada", "L", False, True, True)
        if change != "new":
            await store.mirror_user(first, policy)
        remote = replace(first, first_name="Augusta") if change == "renamed" else first
        entry = cached_token(uuid)
        counted = CountedStatements(database)
        mirrored = await store.mirror_user(remote, policy, token=entry)
        assert mirrored.first_name == remote.first_name and mirrored.username == "ada"
        if change == "unchanged":
            assert counted.count == 2
        loaded = await store.load_token(entry.token_uuid)
        assert loaded is not None and loaded.user == mirrored == await store.get_user(uuid)
