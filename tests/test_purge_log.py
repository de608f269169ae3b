"""Purges logged by other workers reach this worker's L1 even when they commit out of
id order (PostgreSQL draws ids at insert and shows rows at commit)."""

from __future__ import annotations

from clusterfed.server.testing import local_config
from clusterfed.server.users.service import users_table
from clusterfed.service import Federation
from clusterfed.storage.database import Database
from clusterfed.storage.models import FederationPurge
from clusterfed.storage.store import SqlFederationStore

from tests.support.databases import DatabaseFactory


async def log_purge(database: Database, purge_id: int, value: str) -> None:
    async with database.sessionmaker() as session:
        session.add(FederationPurge(id=purge_id, kind="user", value=value))
        await session.commit()


async def test_a_purge_committed_after_a_later_one_is_still_applied(
    databases: DatabaseFactory,
) -> None:
    url = databases.new_url("purges")
    database = Database(url)
    await database.start()
    federation = Federation(local_config("c97qk", url), SqlFederationStore(database, users_table))
    try:
        await federation.start()
        await log_purge(database, 6, "qr1hi-tpzed-aaaaaaaaaaaaaaa")  # the later id commits first
        assert await federation.apply_pending_purges() == 1
        await log_purge(database, 5, "qr1hi-tpzed-bbbbbbbbbbbbbbb")  # then the earlier one
        assert await federation.apply_pending_purges() == 1
        assert await federation.apply_pending_purges() == 0  # and nothing twice
    finally:
        await federation.aclose()
        await database.dispose()
