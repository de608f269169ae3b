"""Point reads on the hot path: one row by key, as cheaply as each database allows.

The L2 lookup of a token the L1 does not hold is one indexed row; what it costs is almost
all driver plumbing, not the database (measured per read, one worker, 12,000 cached
tokens):

- SQLite through aiosqlite: every cursor call is a hop to the connection's thread and
  back (cursor, execute, fetch, close, the rollback at checkin), about nine hops for the
  token and its user: 1.5 ms of CPU. The same joined read on a plain ``sqlite3``
  connection, on the event loop, takes 34 us through SQLAlchemy Core (65 us if the
  connection is checked out of a pool for each read, so each thread keeps one). In WAL mode a
  reader never waits for a writer, so the loop is not held by another process's write;
  if the file is busy anyway (a checkpoint, a writer switching journal modes) the read
  gives up after ``INLINE_BUSY_MS`` and goes the asynchronous way.
- PostgreSQL through asyncpg: SQLAlchemy's engine wraps each statement in BEGIN and
  ROLLBACK (620 us of CPU), or, on an engine in autocommit, still spends 215 us on its
  pool and execution objects around a 50 us statement. The database's ``PgPoints`` run
  the statement, compiled once, on an asyncpg connection of their own: one round trip,
  about 60 us.

An in-memory SQLite database cannot be opened twice, so it reads the asynchronous way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Row, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Executable

if TYPE_CHECKING:
    from .pg_points import PgPoints

log = logging.getLogger("clusterfed.storage")

# How long an inline SQLite read may hold the event loop waiting for a busy file before
# it is retried the asynchronous way (which waits up to the engine's busy timeout).
INLINE_BUSY_MS = 20


class PointReads:
    """``first(statement, params)``: the first row, read the cheapest way for ``engine``."""

    def __init__(self, engine: AsyncEngine, pg: PgPoints | None = None) -> None:
        """``pg``: the database's PostgreSQL point statements, when it has them (its owner
        disposes of them)."""
        self._engine = engine
        self._inline: Engine | None = None
        self._local = threading.local()  # the inline connection of each thread
        self._opened: list[Connection] = []
        self._pg = pg
        url = engine.url
        if url.get_backend_name() == "sqlite" and sqlite_file(url.database):
            self._inline = _inline_sqlite_engine(url.database or "")

    @property
    def mode(self) -> str:
        """How reads are made: ``inline`` (SQLite file), ``asyncpg`` or ``async``."""
        if self._inline is not None:
            return "inline"
        return "asyncpg" if self._pg is not None else "async"

    async def first(self, statement: Executable, params: Mapping[str, Any]) -> Row[Any] | None:
        """The first row, or None. (On PostgreSQL a named tuple: read it by attribute,
        index or slice, as a ``Row``.)"""
        if self._pg is not None:
            return await self._pg.first(statement, params)
        if self._inline is not None:
            try:
                return self._inline_connection().execute(statement, params).first()
            except OperationalError as exc:
                if not _busy(exc):
                    raise
                log.debug("inline read found the database busy; reading asynchronously")
        async with self._engine.connect() as connection:
            return (await connection.execute(statement, params)).first()

    def _inline_connection(self) -> Connection:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None or connection.closed:
            assert self._inline is not None
            connection = self._local.connection = self._inline.connect()
            self._opened.append(connection)
        return connection

    async def dispose(self) -> None:
        if self._inline is not None:
            for connection in self._opened:
                connection.close()
            self._opened.clear()
            self._inline.dispose()


def sqlite_file(database: str | None) -> bool:
    """Is ``database`` (a SQLite URL's) a file that another connection can open too?"""
    return bool(database) and database != ":memory:" and not database.startswith("file:")


def _inline_sqlite_engine(path: str) -> Engine:
    # check_same_thread off: a host may run its loop in a thread of its own, and the
    # pool hands a connection to one caller at a time anyway.
    engine = create_sync_engine(
        make_url("sqlite+pysqlite://").set(database=path),
        connect_args={"check_same_thread": False, "timeout": INLINE_BUSY_MS / 1000},
        hide_parameters=True,
        # Each read its own read transaction: a revocation's delete is seen at once.
        isolation_level="AUTOCOMMIT",
    )

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={INLINE_BUSY_MS}")
        # Never a writer: this connection exists to read without waiting.
        cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    return engine


def _busy(exc: OperationalError) -> bool:
    message = str(exc.orig).lower()
    return "locked" in message or "busy" in message
