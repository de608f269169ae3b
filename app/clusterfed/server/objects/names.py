"""Names unique in their owner, as Arvados has them for collections and projects.

A second collection, or a second project, with a name its owner already holds is refused
(422). A create that says ``ensure_unique_name=true`` is renamed instead, the way Arvados
does it: ``<name> (<UTC time to the millisecond>)``, e.g. ``sample (2025-01-31T12:00:00.123Z)``,
with the name cut short if the whole would pass 255 characters. The rule is the database's
(unique indexes, migration 0003), so two concurrent creates cannot both win a name: the
insert is an ``INSERT ... ON CONFLICT DO NOTHING``, and a conflict picks the next name
within the same transaction. Roles and links have no such rule.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from clusterfed.errors import Unprocessable
from clusterfed.server.models import Collection, Group
from clusterfed.storage.db import utcnow
from clusterfed.storage.upsert import insert_for

NAME_LENGTH = 255
ATTEMPTS = 3  # the name as asked, then two timestamps (Arvados retries twice too)
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
    tried: set[str] = set()
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
        tried.add(values["name"])
        values["name"] = timestamped(asked, utcnow())
        if values["name"] in tried:
            # Taken within this millisecond: the next one is another name.
            await asyncio.sleep(0.002)
            values["name"] = timestamped(asked, utcnow())
    raise Unprocessable(f"could not find a unique name for {asked!r} in {values['owner_uuid']}")
