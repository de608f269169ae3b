"""The database a running app uses: created in the lifespan, disposed after it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .db import create_engine, create_sessionmaker
from .point_reads import PointReads
from .point_writes import PointWrites

if TYPE_CHECKING:
    from .pg_points import PgPoints


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: AsyncEngine | None = None
        self._sessionmaker: async_sessionmaker[AsyncSession] | None = None
        self._pg: PgPoints | None = None
        self._reads: PointReads | None = None
        self._writes: PointWrites | None = None

    @property
    def started(self) -> bool:
        return self._engine is not None

    async def start(self) -> None:
        if self._engine is not None:
            return
        self._engine = create_engine(self.url)
        self._sessionmaker = create_sessionmaker(self._engine)
        if self._engine.dialect.name == "postgresql":
            from .pg_points import PgPoints  # asyncpg is installed only for PostgreSQL

            self._pg = PgPoints(self._engine)
        self._reads = PointReads(self._engine, self._pg)
        self._writes = PointWrites(self._engine, self._pg)

    async def dispose(self) -> None:
        if self._reads is not None:
            await self._reads.dispose()
        if self._writes is not None:
            await self._writes.dispose()
        if self._pg is not None:
            await self._pg.dispose()
        if self._engine is not None:
            await self._engine.dispose()
        self._engine = self._sessionmaker = None
        self._pg = None
        self._reads = None
        self._writes = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("database is not started (the app lifespan starts it)")
        return self._engine

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        if self._sessionmaker is None:
            raise RuntimeError("database is not started (the app lifespan starts it)")
        return self._sessionmaker

    @property
    def pg(self) -> PgPoints | None:
        """PostgreSQL's point statements and connections of their own (None: not PostgreSQL)."""
        return self._pg

    @property
    def reads(self) -> PointReads:
        """One-row reads for the hot path (the L2 lookup): see ``point_reads``."""
        if self._reads is None:
            raise RuntimeError("database is not started (the app lifespan starts it)")
        return self._reads

    @property
    def writes(self) -> PointWrites:
        """One-statement writes for the hot path (a validation's row): see ``point_writes``."""
        if self._writes is None:
            raise RuntimeError("database is not started (the app lifespan starts it)")
        return self._writes

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One session that commits when the work succeeds and rolls back when it raises:
        what a request's session dependency yields."""
        async with self.sessionmaker() as session:
            try:
                yield session
                # Most requests never touch their session (the hot paths read and write
                # through ``reads`` and ``writes``); committing one that began nothing
                # would begin and end an empty transaction: 30 of 70 us per request.
                # (Adding, changing or deleting an object begins one, as executing does.)
                if session.in_transaction():
                    await session.commit()
            except BaseException:
                await session.rollback()
                raise
