"""``INSERT ... ON CONFLICT`` for the dialect a session is bound to (SQLite or PostgreSQL)."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Table, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

# Bound parameters of a prebuilt upsert are the column names with this prefix (SQLAlchemy
# reserves the bare column names for its own VALUES parameters).
PARAM_PREFIX = "v_"


def insert_for(session: AsyncSession, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


@functools.cache
def prebuilt_upsert(dialect: str, table: Table, keys: tuple[str, ...]) -> Any:
    """INSERT of every column of ``table`` from bound parameters (``PARAM_PREFIX`` + its
    name), updating the other columns when the ``keys`` collide; built once per table
    and dialect: building the statement for each row cost as much as writing it."""
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(table)
    statement = insert.values({c.name: bindparam(PARAM_PREFIX + c.name) for c in table.c})
    return statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={c.name: statement.excluded[c.name] for c in table.c if c.name not in keys},
    )


def upsert_params(values: dict[str, Any]) -> dict[str, Any]:
    return {PARAM_PREFIX + name: value for name, value in values.items()}
