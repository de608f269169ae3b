"""PostgreSQL point statements: built with SQLAlchemy, run on asyncpg connections of their own.

The hot path's reads and writes are one statement each (``point_reads``,
``point_writes``). Through SQLAlchemy's async engine each costs about 215 us of CPU
on a 2-core machine: the pool checkout (a greenlet hop, events, a ``Connection``
object: 80 us), the execution context and result objects around it (85 us), and the
statement itself on asyncpg (50 us). A cold validation makes six such statements across
its two clusters, an L1 miss one. Here each statement is compiled once (SQL text,
positional parameters, SQLAlchemy's own bind and result processors for the columns'
types) and runs on a connection taken from a plain list: about 60 us.

What SQLAlchemy's asyncpg dialect sets up on its connections, these get too: JSON is
decoded by the connection's codec, inet stays text. Driver errors surface as
SQLAlchemy's (``IntegrityError``, ``OperationalError``, ``DBAPIError``) as they do
through the engine, so callers and the 503 mapping see one family whatever the backend.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections import deque, namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from cachetools import LRUCache
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Executable, Select

# SQLAlchemy's URL options for its asyncpg dialect that asyncpg.connect calls otherwise
# (or not at all: a statement name function is SQLAlchemy's own).
_RENAMED_OPTIONS = {"prepared_statement_cache_size": "statement_cache_size"}
_DIALECT_ONLY_OPTIONS = ("prepared_statement_name_func", "async_creator_fn")
# Connections per process. The statements are short, so fewer than the engine's pool
# serve as many requests; and none are opened beyond them: under 32 requests in flight,
# SQLAlchemy's 8+8 pool opened and closed overflow connections all the time (a backend
# forked, the statements prepared again), where waiting for one costs nothing.
POOL_SIZE = 16
# Compiled statements kept: the hot path has a handful, each built once at import.
COMPILED_CACHE_SIZE = 64

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the bound parameters, in $1, $2, ... order
    binds: tuple[Processor, ...]
    compiled: Any  # SQLAlchemy's Compiled: fills in the parameters a statement sets itself
    row: type[tuple[Any, ...]] | None  # for a SELECT: rows as named tuples ...
    results: tuple[Processor, ...]  # ... with each column's result processor
    # Column defaults SQLAlchemy computes in Python (``default=utcnow``) are filled in by
    # its execution context, which these statements skip: such a statement runs through
    # the engine. (The hot path's statements give every value.)
    needs_engine: bool


class PgPoints:
    """``first`` and ``execute``: one statement, one round trip, on a connection of a
    pool of ``size`` (none opened beyond them: waiting for one costs nothing, opening one
    forks a backend and prepares every statement again)."""

    def __init__(self, engine: AsyncEngine, size: int = POOL_SIZE) -> None:
        self._engine = engine
        self._dialect: Dialect = engine.dialect
        args, options = engine.dialect.create_connect_args(engine.url)
        for name in _DIALECT_ONLY_OPTIONS:
            options.pop(name, None)
        for old, new in _RENAMED_OPTIONS.items():
            if old in options:
                options[new] = int(options.pop(old))
        self._connect_positional, self._connect_options = list(args), options
        self._slots = asyncio.Semaphore(size)
        self._idle: deque[asyncpg.Connection] = deque()
        self._compiled: LRUCache[Executable, _Compiled] = LRUCache(COMPILED_CACHE_SIZE)
        self._closed = False

    async def first(self, statement: Executable, params: Mapping[str, Any]) -> Any:
        """The first row (a named tuple: read it by attribute, index or slice, as
        SQLAlchemy's ``Row``) or None."""
        compiled = self._compile(statement)
        if compiled.needs_engine:
            return await self._through_engine(statement, params, fetch=True)
        record = await self._run(compiled, params, fetch=True)
        if record is None:
            return None
        if compiled.row is None:  # text(): no column types, names known from the row
            return _text_row(tuple(record.keys()))(*record.values())
        values = [v if p is None else p(v) for p, v in zip(compiled.results, record, strict=True)]
        return compiled.row(*values)

    async def execute(self, statement: Executable, params: Mapping[str, Any]) -> None:
        compiled = self._compile(statement)
        if compiled.needs_engine:
            await self._through_engine(statement, params, fetch=False)
        else:
            await self._run(compiled, params, fetch=False)

    async def _through_engine(
        self, statement: Executable, params: Mapping[str, Any], *, fetch: bool
    ) -> Any:
        async with self._engine.begin() as connection:
            result = await connection.execute(statement, params)
            return result.first() if fetch else None

    async def _run(self, compiled: _Compiled, params: Mapping[str, Any], *, fetch: bool) -> Any:
        values = compiled.compiled.construct_params(params)
        args = [
            values[name] if bind is None else bind(values[name])
            for name, bind in zip(compiled.names, compiled.binds, strict=True)
        ]
        async with self._slots:
            connection = await self._take()
            reusable = False
            try:
                if fetch:
                    record = await connection.fetchrow(compiled.sql, *args)
                else:
                    await connection.execute(compiled.sql, *args)
                    record = None
                reusable = True
                return record
            except asyncpg.PostgresError as exc:
                reusable = True  # the server refused the statement: the connection is fine
                raise _sqlalchemy_error(compiled.sql, exc) from exc
            except (OSError, asyncpg.InterfaceError) as exc:
                raise sa_exc.OperationalError(
                    compiled.sql, None, exc, connection_invalidated=True
                ) from exc
            finally:
                # One cut, or cancelled mid-statement, is in a state nobody knows: it goes.
                self._give_back(connection, reusable)

    async def _take(self) -> asyncpg.Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.is_closed():  # the server went away while it sat idle
                return connection
        return await self._open()

    async def _open(self) -> asyncpg.Connection:
        if self._closed:
            raise sa_exc.InterfaceError("point statements", None, RuntimeError("disposed"))
        try:
            connection = await asyncpg.connect(*self._connect_positional, **self._connect_options)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise sa_exc.OperationalError("connect", None, exc) from exc
        try:
            await _as_sqlalchemy_sets_up(connection)
        except BaseException:
            connection.terminate()
            raise
        return connection

    async def connect(self) -> asyncpg.Connection:
        """A connection of the caller's own, outside the pool, set up as the pool's are
        (for ``LISTEN``: it stays with one listener for its life). The caller closes it."""
        return await self._open()

    def _give_back(self, connection: asyncpg.Connection, reusable: bool) -> None:
        if reusable and not (
            self._closed or connection.is_closed() or connection.is_in_transaction()
        ):
            self._idle.append(connection)
        else:
            connection.terminate()

    def _compile(self, statement: Executable) -> _Compiled:
        compiled = self._compiled.get(statement)
        if compiled is None:
            compiled = self._compiled[statement] = _compile(statement, self._dialect)
        return compiled

    async def dispose(self) -> None:
        self._closed = True
        idle, self._idle = list(self._idle), deque()
        await asyncio.gather(*(c.close(timeout=5) for c in idle), return_exceptions=True)


def _compile(statement: Executable, dialect: Dialect) -> _Compiled:
    compiled: Any = statement.compile(dialect=dialect)
    names = tuple(compiled.positiontup or ())
    binds = tuple(_bind_processor(compiled.binds[name].type, dialect) for name in names)
    row: type[tuple[Any, ...]] | None = None
    results: tuple[Processor, ...] = ()
    if isinstance(statement, Select):
        columns = statement.selected_columns
        row = namedtuple("PointRow", list(columns.keys()), rename=True)  # type: ignore[misc]
        results = tuple(_result_processor(column.type, dialect) for column in columns)
    needs_engine = bool(compiled.insert_prefetch or compiled.update_prefetch)
    return _Compiled(compiled.string, names, binds, compiled, row, results, needs_engine)


@functools.cache
def _text_row(names: tuple[str, ...]) -> type[tuple[Any, ...]]:
    return namedtuple("PointRow", names, rename=True)  # type: ignore[misc]


def _bind_processor(type_: Any, dialect: Dialect) -> Processor:
    return type_.dialect_impl(dialect).bind_processor(dialect)


def _result_processor(type_: Any, dialect: Dialect) -> Processor:
    return type_.dialect_impl(dialect).result_processor(dialect, None)


async def _as_sqlalchemy_sets_up(connection: asyncpg.Connection) -> None:
    """The codecs SQLAlchemy's asyncpg dialect sets on each connection it opens: JSON
    decoded by the codec (its JSON type's result processor then does nothing), sent as
    the text its bind processor made; inet left as text."""
    for name in ("json", "jsonb"):
        await connection.set_type_codec(
            name, encoder=_same, decoder=json.loads, schema="pg_catalog", format="text"
        )
    await connection.set_type_codec(
        "inet", encoder=_same, decoder=_same, schema="pg_catalog", format="text"
    )


def _same(value: Any) -> Any:
    return value


def _sqlalchemy_error(sql: str, exc: asyncpg.PostgresError) -> sa_exc.DBAPIError:
    """The SQLAlchemy class the engine would raise for ``exc`` (without the parameters:
    they may hold secrets)."""
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return sa_exc.IntegrityError(sql, None, exc)
    connection_lost = (
        asyncpg.PostgresConnectionError,
        asyncpg.CannotConnectNowError,
        asyncpg.AdminShutdownError,
    )
    if isinstance(exc, connection_lost):
        return sa_exc.OperationalError(sql, None, exc, connection_invalidated=True)
    if isinstance(exc, asyncpg.QueryCanceledError):  # a timeout: the connection is fine
        return sa_exc.OperationalError(sql, None, exc)
    if isinstance(exc, asyncpg.DataError):
        return sa_exc.DataError(sql, None, exc)
    if isinstance(exc, asyncpg.SyntaxOrAccessError):
        return sa_exc.ProgrammingError(sql, None, exc)
    return sa_exc.DBAPIError(sql, None, exc)
