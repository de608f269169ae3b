"""``Database.transaction``, the session each request of the example server gets: what a
handler did is committed, whichever way it did it, and a session it never touched begins
no transaction."""

from __future__ import annotations

import pytest
from clusterfed.server.models import User
from clusterfed.storage.database import Database
from clusterfed.tokens import USER_TYPE, new_uuid
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session, SessionTransaction

from tests.support.databases import DatabaseFactory


def _user(uuid: str) -> User:
    return User(uuid=uuid, email=f"{uuid}@example", username=f"u{uuid[-8:]}")


async def _usernames(database: Database, uuid: str) -> list[str]:
    async with database.sessionmaker() as session:
        return list(await session.scalars(select(User.username).where(User.uuid == uuid)))


async def test_added_executed_and_changed_objects_are_committed(
    databases: DatabaseFactory,
) -> None:
    database = Database(databases.new_url())
    await database.start()
    try:
        added = new_uuid("zzzzz", USER_TYPE)
        async with database.transaction() as session:
            session.add(_user(added))  # added only: no flush, no transaction begun yet
        assert await _usernames(database, added) == [f"u{added[-8:]}"]

        async with database.transaction() as session:
            await session.execute(update(User).where(User.uuid == added).values(username="x1"))
        assert await _usernames(database, added) == ["x1"]

        async with database.transaction() as session:
            user = await session.scalar(select(User).where(User.uuid == added))
            assert user is not None
            await session.commit()  # the handler commits, then changes it again
            user.username = "x2"
        assert await _usernames(database, added) == ["x2"]

        async with database.sessionmaker() as session:
            before = len(list(await session.scalars(select(User.uuid))))
        with pytest.raises(RuntimeError):
            async with database.transaction() as session:
                session.add(_user(new_uuid("zzzzz", USER_TYPE)))
                await session.flush()
                raise RuntimeError("the handler failed")
        async with database.sessionmaker() as session:
            assert len(list(await session.scalars(select(User.uuid)))) == before
    finally:
        await database.dispose()


async def test_an_untouched_session_begins_no_transaction(databases: DatabaseFactory) -> None:
    database = Database(databases.new_url())
    await database.start()
    begun: list[object] = []

    def created(session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is None:
            begun.append(transaction)

    event.listen(Session, "after_transaction_create", created)
    try:
        async with database.transaction():
            pass
        assert begun == []
        async with database.transaction() as session:
            await session.execute(select(User.uuid))
        assert len(begun) == 1
    finally:
        event.remove(Session, "after_transaction_create", created)
        await database.dispose()
