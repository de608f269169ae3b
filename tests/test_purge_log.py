"""Purges logged by other workers reach this worker's L1 even when they commit out of
id order (PostgreSQL draws ids at insert and shows rows at commit)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clusterfed.identity import Identity, UserRecord
from clusterfed.server.testing import local_config
from clusterfed.server.users.service import users_table
from clusterfed.service import Federation
from clusterfed.storage.database import Database
from clusterfed.storage.models import FederationPurge
from clusterfed.storage.store import SqlFederationStore
from clusterfed.tokens import TOKEN_TYPE, new_uuid
from clusterfed.trust.cache import L1Entry

from tests.support.databases import DatabaseFactory

ALICE = "qr1hi-tpzed-aaaaaaaaaaaaaaa"
BOB = "qr1hi-tpzed-bbbbbbbbbbbbbbb"
CAROL = "qr1hi-tpzed-ccccccccccccccc"


async def log_purge(database: Database, purge_id: int, value: str) -> None:
    async with database.sessionmaker() as session:
        session.add(FederationPurge(id=purge_id, kind="user", value=value))
        await session.commit()


def cache_identity(federation: Federation, user_uuid: str) -> bytes:
    """Put an accepted token of ``user_uuid`` into this worker's L1; returns its key."""
    token_uuid = new_uuid("qr1hi", TOKEN_TYPE)
    user = UserRecord(user_uuid, None, None, None, None, False, True, True)
    now = datetime.now(UTC)
    entry = L1Entry(
        Identity(user, token_uuid, ("all",), "qr1hi", None), now + timedelta(hours=1), 0
    )
    cache = federation.validator.cache
    key = cache.key("qr1hi", f"v2/{token_uuid}/secret")
    cache.put(key, entry)
    return key


async def test_a_purge_committed_after_a_later_one_is_still_applied(
    databases: DatabaseFactory,
) -> None:
    url = databases.new_url("purges")
    database = Database(url)
    await database.start()
    federation = Federation(local_config("c97qk", url), SqlFederationStore(database, users_table))
    cache = federation.validator.cache
    try:
        await federation.start()
        alice, bob, carol = (cache_identity(federation, user) for user in (ALICE, BOB, CAROL))
        await log_purge(database, 6, ALICE)  # the later id commits first
        assert await federation.apply_pending_purges() == 1
        assert (cache.get(alice), cache.get(bob) is not None) == (None, True)
        await log_purge(database, 5, BOB)  # then the earlier one
        assert await federation.apply_pending_purges() == 1
        assert cache.get(bob) is None
        assert await federation.apply_pending_purges() == 0  # and nothing twice
        assert cache.get(carol) is not None and len(cache) == 1  # nobody else's entry
    finally:
        await federation.aclose()
        await database.dispose()
