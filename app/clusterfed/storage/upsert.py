"""``INSERT ... ON CONFLICT`` for the dialect a session is bound to (SQLite or PostgreSQL)."""

from __future__ import annotations

import functools
import importlib
from typing import Any

from sqlalchemy import Table, bindparam
from sqlalchemy.ext.asyncio import AsyncSession

# Bound parameters of a prebuilt upsert are the column names with this prefix (SQLAlchemy
# reserves the bare column names for its own VALUES parameters).
PARAM_PREFIX = "v_"


def insert_for(session: AsyncSession, table: Any) -> Any:
    return dialect_insert(session.get_bind().dialect.name, table)


def dialect_insert(dialect: str, table: Any) -> Any:
    # Imported when first used: loading SQLAlchemy's PostgreSQL dialect costs a tenth of a
    # second, which a SQLite cluster's command line should not pay.
    name = "postgresql" if dialect == "postgresql" else "sqlite"
    return importlib.import_module(f"sqlalchemy.dialects.{name}").insert(table)


@functools.cache
def prebuilt_upsert(dialect: str, table: Table, keys: tuple[str, ...]) -> Any:
    """INSERT of every column of ``table`` from bound parameters (``PARAM_PREFIX`` + its
    name), updating the other columns when the ``keys`` collide; built once per table
    and dialect: building the statement for each row cost as much as writing it."""
    values = {c.name: bindparam(PARAM_PREFIX + c.name) for c in table.c}
    statement = dialect_insert(dialect, table).values(values)
    return statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={c.name: statement.excluded[c.name] for c in table.c if c.name not in keys},
    )


def upsert_params(values: dict[str, Any]) -> dict[str, Any]:
    return {PARAM_PREFIX + name: value for name, value in values.items()}
