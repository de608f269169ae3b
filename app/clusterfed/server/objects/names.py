"""Names unique in their owner, as Arvados has them for collections and projects.

A second collection, or a second project, with a name its owner already holds is refused
(422). A create that says ``ensure_unique_name=true`` is renamed instead, the way Arvados
does it: ``<name> (<UTC time to the millisecond>)``, e.g. ``sample (2025-01-31T12:00:00.123Z)``,
with the name cut short if the whole would pass 255 characters. The rule is the database's
(unique indexes, migration 0003), so two concurrent creates cannot both win a name: the
insert is an ``INSERT ... ON CONFLICT DO NOTHING``, and a conflict picks the next name
within the same transaction. Roles and links have no such rule.

Renaming creates of one name in one owner take turns (on PostgreSQL a transaction-scoped
advisory lock; SQLite has one writer at a time anyway). Without that, on PostgreSQL every
create that hit another's uncommitted name waited for it, woke with the others when it
committed, stamped the same millisecond as they did and collided again, until its tries ran
out (422 under load). Taking turns, a conflict is always with a committed name, and each
try stamps a later millisecond than the one before.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from clusterfed.errors import Unprocessable
from clusterfed.server.models import Collection, Group
from clusterfed.storage.db import utcnow
from clusterfed.storage.upsert import insert_for

NAME_LENGTH = 255
ATTEMPTS = 5  # the name as asked, then timestamps, each a later millisecond
MILLISECOND = timedelta(milliseconds=1)
UniquelyNamed = Collection | Group


def has_unique_name(model: type[Any], values: dict[str, Any]) -> bool:
    """Whether an object of ``model`` with ``values`` falls under the rule."""
    if values.get("name") is None:
        return False  # an unnamed collection conflicts with nothing
    return model is Collection or (model is Group and values.get("group_class") == "project")


def timestamped(name: str, now: datetime) -> str:
    suffix = f" ({now:%Y-%m-%dT%H:%M:%S}.{now.microsecond // 1000:03d}Z)"
    return name[: NAME_LENGTH - len(suffix)] + suffix


def name_taken(singular: str, name: str, owner_uuid: str) -> Unprocessable:
    return Unprocessable(
        f"a {singular} named {name!r} already exists in {owner_uuid}; "
        "choose another name, or create with ensure_unique_name=true"
    )


async def take_turns(session: AsyncSession, table: str, owner_uuid: str, name: str) -> None:
    """Waits until no other transaction is choosing a name for ``name`` in ``owner_uuid``.

    Held until this transaction ends, so the next one in line sees this one's name.
    """
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite: the first insert already waits for the one writer
    await session.execute(select(func.pg_advisory_xact_lock(turn_key(table, owner_uuid, name))))


def turn_key(table: str, owner_uuid: str, name: str) -> int:
    """The advisory lock key (a signed 64-bit integer) of one name in one owner."""
    digest = hashlib.blake2b(f"{table}\0{owner_uuid}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, signed=True)


async def insert_uniquely_named(
    session: AsyncSession,
    model: type[UniquelyNamed],
    values: dict[str, Any],
    *,
    singular: str,
    ensure_unique_name: bool,
) -> UniquelyNamed:
    """Inserts ``values`` (they hold the UUID) and returns the new row."""
    asked = values["name"]
    if ensure_unique_name:
        await take_turns(session, model.__tablename__, values["owner_uuid"], asked)
    stamp: datetime | None = None
    for _ in range(ATTEMPTS):
        statement = (
            insert_for(session, model.__table__)
            .values(**values)
            .on_conflict_do_nothing()
            .returning(model.id)
        )
        new_id = await session.scalar(statement)
        if new_id is not None:
            row = await session.get(model, new_id)
            assert row is not None  # inserted by this very transaction
            return row
        if not ensure_unique_name:
            raise name_taken(singular, asked, values["owner_uuid"])
        # A later millisecond than the last try, even when the clock has not moved on.
        now = utcnow()
        stamp = now if stamp is None or now >= stamp + MILLISECOND else stamp + MILLISECOND
        values["name"] = timestamped(asked, stamp)
    raise Unprocessable(f"could not find a unique name for {asked!r} in {values['owner_uuid']}")
