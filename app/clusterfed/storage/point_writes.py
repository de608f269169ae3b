"""Point writes on the hot path: one statement that is a transaction by itself.

A cold validation writes one row on each side: the validating cluster caches the token
(``store.save_token``), the issuer remembers who validated it (``record_validation``).
Through the async engine each is a transaction of its own, and what that costs is
driver plumbing, not the database:

- SQLite through aiosqlite: checkout, BEGIN, execute, COMMIT and the rollback at checkin
  are each a hop to the connection's thread and back. Here the statement runs on a
  ``sqlite3`` connection in autocommit (a statement alone is its own transaction) in one
  thread of its own: one hop per write. The one thread also queues this process's
  point writes instead of having them wait on each other's locks; the file's other
  writers (other workers, the async engine) are waited for up to the usual busy
  timeout, in that thread, never on the event loop.
  Rows that are a cache (``durable=False``) are committed without syncing the disk.
- PostgreSQL through asyncpg: on the database's ``PgPoints`` the statement is one round
  trip (not BEGIN, statement and COMMIT) on a connection of their own, without the
  engine's pool and execution objects around it.

An in-memory SQLite database cannot be opened twice, so it writes the asynchronous way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, Engine, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Executable

from .db import SQLITE_BUSY_TIMEOUT_SECONDS, sqlite_pragmas
from .point_reads import sqlite_file

if TYPE_CHECKING:
    from .pg_points import PgPoints

# WAL mode's own advice for what may be lost to a power cut but never to a crash of the
# process, and never corrupts the file (https://www.sqlite.org/pragma.html#pragma_synchronous).
CACHE_SYNCHRONOUS = "NORMAL"
T = TypeVar("T")


class PointWrites:
    """``execute(statement, params)``: one statement, committed, the cheapest way."""

    def __init__(self, engine: AsyncEngine, pg: PgPoints | None = None) -> None:
        """``pg``: the database's PostgreSQL point statements, when it has them (its owner
        disposes of them)."""
        self._engine = engine
        self._pg = pg
        self._sqlite: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        # One connection for durable writes, one for cache rows; used in, and only in,
        # that thread.
        self._connections: dict[bool, Connection] = {}
        url = engine.url
        if url.get_backend_name() == "sqlite" and sqlite_file(url.database):
            self._sqlite = _sqlite_writer_engine(url.database or "")
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="clusterfed-writes")

    @property
    def mode(self) -> str:
        """How writes are made: ``thread`` (SQLite file), ``asyncpg`` or ``async``."""
        if self._thread is not None:
            return "thread"
        return "asyncpg" if self._pg is not None else "async"

    async def execute(
        self, statement: Executable, params: Mapping[str, Any], *, durable: bool = True
    ) -> None:
        """Run ``statement``; committed when the await returns.

        ``durable=False`` is for rows that are a cache of something kept elsewhere (the
        token cache: an issuer can always be asked again). On a SQLite file such a commit
        is not synced to disk (``synchronous=NORMAL``, on a connection of its own): a
        process that dies loses nothing, a power cut or an OS crash may lose the last such
        rows. The sync cost c97qk 0.3 ms of CPU per cold validation here, a seventh of
        it. Everything else, and everything on PostgreSQL, is committed durably."""
        if self._thread is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(
                self._thread, self._execute_in_thread, statement, params, durable
            )
            return
        if self._pg is not None:
            await self._pg.execute(statement, params)
            return
        async with self._engine.begin() as connection:
            await connection.execute(statement, params)

    async def first(
        self, statement: Executable, params: Mapping[str, Any], *, durable: bool = True
    ) -> Any:
        """Run ``statement``, a write with ``RETURNING``; its first row (or None),
        committed when the await returns. ``durable`` as for ``execute``."""
        if self._thread is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._thread, self._first_in_thread, statement, params, durable
            )
        if self._pg is not None:
            return await self._pg.first(statement, params)
        async with self._engine.begin() as connection:
            return (await connection.execute(statement, params)).first()

    async def first_each(
        self, statements: Sequence[tuple[Executable, Mapping[str, Any]]], *, durable: bool = True
    ) -> list[Any]:
        """``first`` of each statement in turn, stopping after the first that returns no
        row: the rows (the last one None when it stopped early). On a SQLite file all of
        them run in one hop to the writer thread."""
        if self._thread is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._thread, self._first_each_in_thread, statements, durable
            )
        rows = []
        for statement, params in statements:
            rows.append(await self.first(statement, params, durable=durable))
            if rows[-1] is None:
                break
        return rows

    async def call_in_writer(self, work: Callable[[Any], T], *, durable: bool = True) -> T:
        """``work(connection)`` in the writer thread, given its DBAPI ``sqlite3``
        connection (in autocommit: each statement commits): a few plain statements in
        one hop, without SQLAlchemy's execution around each. SQLite files only (``mode``
        ``thread``)."""
        if self._thread is None:
            raise RuntimeError("call_in_writer is for a SQLite file's writer thread")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._thread, lambda: work(self._connection(durable).connection.dbapi_connection)
        )

    def _first_in_thread(
        self, statement: Executable, params: Mapping[str, Any], durable: bool
    ) -> Any:
        return self._connection(durable).execute(statement, params).first()

    def _first_each_in_thread(
        self, statements: Sequence[tuple[Executable, Mapping[str, Any]]], durable: bool
    ) -> list[Any]:
        rows = []
        for statement, params in statements:
            rows.append(self._first_in_thread(statement, params, durable))
            if rows[-1] is None:
                break
        return rows

    def _execute_in_thread(
        self, statement: Executable, params: Mapping[str, Any], durable: bool
    ) -> None:
        self._connection(durable).execute(statement, params)

    def _connection(self, durable: bool) -> Connection:
        connection = self._connections.get(durable)
        if connection is None or connection.closed:
            assert self._sqlite is not None
            connection = self._connections[durable] = self._sqlite.connect()
            if not durable:
                connection.exec_driver_sql(f"PRAGMA synchronous={CACHE_SYNCHRONOUS}")
        return connection

    async def dispose(self) -> None:
        if self._thread is None:
            return
        thread, self._thread = self._thread, None
        # Writes already handed to the thread finish; the connection closes in its thread.
        await asyncio.get_running_loop().run_in_executor(thread, self._close_in_thread)
        thread.shutdown(wait=True)
        assert self._sqlite is not None
        self._sqlite.dispose()

    def _close_in_thread(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()


def _sqlite_writer_engine(path: str) -> Engine:
    engine = create_sync_engine(
        make_url("sqlite+pysqlite://").set(database=path),
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
        hide_parameters=True,
        # A statement alone is its own transaction: committed before the await returns.
        isolation_level="AUTOCOMMIT",
    )
    event.listen(engine, "connect", sqlite_pragmas)
    return engine
