"""Database plumbing shared by clusterfed's tables and the example server's: the UTC
timestamp type, the naming convention, engines and session factories.

Each set of tables declares its own ``DeclarativeBase`` (clusterfed's in
``storage.models``, a host's wherever it likes) so that each migration chain sees only
its own tables; both use :data:`TYPE_ANNOTATION_MAP` so every timestamp is aware UTC.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, MetaData, TypeDecorator, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


TYPE_ANNOTATION_MAP: dict[Any, Any] = {datetime: UTCDateTime}


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


# Connections kept open per process. SQLAlchemy's default (5, and 10 more opened and
# closed again on demand) made a busy worker open a connection for most requests past
# the fifth concurrent one: a new asyncpg connection (or an aiosqlite thread and its
# pragmas) cost more than the query it was opened for.
POOL_SIZE = 20
POOL_OVERFLOW = 20
PING_AFTER_IDLE_SECONDS = 1.0
# How long a SQLite writer waits for another one (another worker process, say).
SQLITE_BUSY_TIMEOUT_SECONDS = 30
IDLE_SINCE = "clusterfed_idle_since"


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    # Bound parameters include token secrets (v1 lookups) and cache digests; neither a
    # database error nor SQL logging (echo, or a logger at INFO) may carry them into a log
    # line, whatever the caller asked for.
    kwargs["hide_parameters"] = True
    if ":memory:" not in url:
        kwargs.setdefault("pool_size", POOL_SIZE)
        kwargs.setdefault("max_overflow", POOL_OVERFLOW)
    if url.startswith("sqlite"):
        ensure_sqlite_dir(url)
        # WAL lets the several worker processes of `serve --workers N` read while one writes;
        # the busy timeout turns a brief writer collision into a wait instead of an error.
        engine = create_async_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}, **kwargs
        )
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        return engine
    engine = create_async_engine(url, **kwargs)
    _ping_idle_connections(engine)
    return engine


def _ping_idle_connections(engine: AsyncEngine) -> None:
    """SQLAlchemy's ``pool_pre_ping``, for connections that sat idle only.

    A connection whose server went away (PostgreSQL restarted) must not reach a request:
    it is pinged and replaced at checkout. But asyncpg's ping is BEGIN, a query and
    ROLLBACK: three round trips on every checkout, a tenth of a cold validation's CPU.
    A connection checked in less than ``PING_AFTER_IDLE_SECONDS`` ago is taken as is; a
    server that dies within that second costs the requests then in flight a 503, as it
    does the requests inside it anyway.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get(IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dbapi_connection.ping()
        except Exception as exc:  # whatever the driver raises: the connection is gone
            raise DisconnectionError("connection failed its ping") from exc


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """What every connection to a SQLite file clusterfed opens sets first."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (``sqlite+aiosqlite:///var/db.sqlite``); None for another
    database or an in-memory one."""
    if not url.startswith("sqlite") or ":///" not in url:
        return None
    path = url.split(":///", 1)[1].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def ensure_sqlite_dir(url: str) -> None:
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
