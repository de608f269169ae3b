"""PostgreSQL's point statements (``storage.pg_points``): rows as the engine reads them,
SQLAlchemy's errors, and a pool that heals: a connection cut while idle or abandoned
mid-statement is never handed out again, and no more connections are opened than it
holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
from clusterfed.server.errors import database_unavailable
from clusterfed.server.models import ApiClientAuthorization, User
from clusterfed.server.testing import free_port
from clusterfed.server.users.tokens import find_token
from clusterfed.storage.db import UTCDateTime, create_engine
from clusterfed.storage.pg_points import PgPoints
from clusterfed.storage.revocation_models import FederationTokenValidator
from clusterfed.tokens import TOKEN_TYPE, USER_TYPE, new_secret, new_uuid
from sqlalchemy import (
    JSON,
    Boolean,
    Integer,
    String,
    bindparam,
    func,
    insert,
    literal,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.databases import DatabaseFactory, started

pytestmark = pytest.mark.parametrize("backend", ["postgresql"])

PID = select(func.pg_backend_pid())


@asynccontextmanager
async def points(url: str, size: int = 4) -> AsyncIterator[tuple[PgPoints, AsyncEngine]]:
    """Point statements on ``url`` and an engine beside them, to look and to compare."""
    engine = create_engine(url)
    pg = PgPoints(engine, size)
    try:
        yield pg, engine
    finally:
        await pg.dispose()
        await engine.dispose()


async def connections_to(engine: AsyncEngine, database: str) -> int:
    async with engine.connect() as connection:
        count = await connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = :d "
                "AND pid <> pg_backend_pid()"
            ),
            {"d": database},
        )
    return int(count or 0)


async def test_rows_come_back_as_the_engine_reads_them(databases: DatabaseFactory) -> None:
    async with points(databases.new_url()) as (pg, engine):
        when = datetime(2026, 11, 27, 1, 2, 3, 456789, tzinfo=UTC)
        typed = select(
            literal(["GET /x", "all"], JSON).label("scopes"),
            literal(when, UTCDateTime).label("at"),
            literal(None, UTCDateTime).label("never"),
            literal(True, Boolean).label("flag"),
            bindparam("name", type_=String).label("name"),
            literal(7, Integer).label("n"),
        )
        params = {"name": "ada"}
        async with engine.connect() as connection:
            expected = (await connection.execute(typed, params)).first()
        row = await pg.first(typed, params)
        assert expected is not None and row is not None
        assert tuple(row) == tuple(expected) == (["GET /x", "all"], when, None, True, "ada", 7)
        assert (
            row.scopes == ["GET /x", "all"]
            and row.at.tzinfo is not None
            and row[4:]
            == (
                "ada",
                7,
            )
        )
        # Plain SQL: names from the row itself.
        plain = await pg.first(text("SELECT 1 AS one, 'two' AS two"), {})
        assert plain is not None and (plain.one, plain.two) == (1, "two")
        assert await pg.first(text("SELECT 1 WHERE false"), {}) is None


async def test_a_token_and_its_user_read_the_same_both_ways(databases: DatabaseFactory) -> None:
    async with started(databases.new_url()) as database:
        user_uuid, token_uuid, secret = new_uuid("c97qk", USER_TYPE), "", new_secret()
        async with database.transaction() as session:
            session.add(User(uuid=user_uuid, email="ada@example", username="ada", is_active=True))
            await session.flush()  # the token's foreign key needs the user first
            token = ApiClientAuthorization(
                uuid=new_uuid("c97qk", TOKEN_TYPE),
                api_token=secret,
                user_uuid=user_uuid,
                expires_at=datetime(2030, 1, 1, tzinfo=UTC),
                scopes=["GET /arvados/v1/users/current"],
            )
            session.add(token)
            await session.flush()
            token_uuid = token.uuid
        assert database.reads.mode == "asyncpg"
        async with database.sessionmaker() as session:
            for key in ({"uuid": token_uuid}, {"secret": secret}):
                through_points = await find_token(database.reads, **key)
                through_session = await find_token(session, **key)
                assert through_points is not None and through_points == through_session
                assert through_points.user is not None and through_points.user.username == "ada"


async def test_driver_errors_surface_as_sqlalchemys(databases: DatabaseFactory) -> None:
    async with points(databases.new_url()) as (pg, _engine):
        seen = {"token_uuid": new_uuid("qr1hi", TOKEN_TYPE), "cluster_id": "c97qk"}
        twice = insert(FederationTokenValidator.__table__).values(
            **seen, validated_at=datetime.now(UTC)
        )
        await pg.execute(twice, {})
        with pytest.raises(IntegrityError):
            await pg.execute(twice, {})
        with pytest.raises(ProgrammingError):
            await pg.first(text("SELECT * FROM no_such_table"), {})
        # The connection the server refused those on serves the next statement.
        assert (await pg.first(select(literal(1)), {}))[0] == 1
    nowhere = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/test"
    async with points(nowhere) as (pg, _engine):
        with pytest.raises(OperationalError) as refused:
            await pg.first(select(literal(1)), {})
        assert database_unavailable(refused.value)  # answered as 503, not 500


async def test_column_defaults_computed_in_python_are_applied(
    databases: DatabaseFactory,
) -> None:
    # users.created_at is default=utcnow, is_admin default=False: SQLAlchemy fills them.
    async with points(databases.new_url()) as (pg, _engine):
        uuid = new_uuid("c97qk", USER_TYPE)
        before = datetime.now(UTC)
        await pg.execute(insert(User.__table__).values(uuid=uuid, username="defaults"), {})
        users = User.__table__.c
        row = await pg.first(
            select(users.is_admin, users.created_at).where(users.uuid == bindparam("u")),
            {"u": uuid},
        )
        assert row is not None and row.is_admin is False and row.created_at >= before


async def test_a_connection_cut_while_idle_is_not_handed_out_again(
    databases: DatabaseFactory,
) -> None:
    # What a PostgreSQL restart does to an idle pool: the server ends every backend.
    async with points(databases.new_url(), size=1) as (pg, engine):
        pid = (await pg.first(PID, {}))[0]
        async with engine.connect() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        for _ in range(100):  # the loop sees the socket close
            await asyncio.sleep(0.01)
            if await connections_to(engine, engine.url.database or "") == 0:
                break
        await asyncio.sleep(0.05)
        assert (await pg.first(PID, {}))[0] != pid


async def test_a_statement_abandoned_midway_leaves_no_broken_connection(
    databases: DatabaseFactory,
) -> None:
    # A client that goes away cancels its request's statement; the connection is then
    # mid-protocol and must not serve another statement.
    async with points(databases.new_url(), size=1) as (pg, _engine):
        pid = (await pg.first(PID, {}))[0]
        sleeping = asyncio.create_task(pg.first(select(func.pg_sleep(5)), {}))
        await asyncio.sleep(0.2)
        sleeping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sleeping
        for _ in range(5):
            assert (await pg.first(select(literal("next")), {}))[0] == "next"
        assert (await pg.first(PID, {}))[0] != pid


async def test_no_more_connections_than_the_pool_holds(databases: DatabaseFactory) -> None:
    async with points(databases.new_url(), size=3) as (pg, engine):
        sleep = select(func.pg_sleep(0.05), func.pg_backend_pid())
        rows = await asyncio.gather(*(pg.first(sleep, {}) for _ in range(24)))
        assert len({row[1] for row in rows}) == 3
        assert await connections_to(engine, engine.url.database or "") == 3
        await pg.dispose()
        assert await connections_to(engine, engine.url.database or "") == 0


async def test_the_urls_statement_cache_size_is_honoured(databases: DatabaseFactory) -> None:
    # prepared_statement_cache_size=0 is how SQLAlchemy is told to run behind a pooler
    # that cannot keep prepared statements (pgbouncer in transaction mode).
    prepared = text("SELECT count(*) FROM pg_prepared_statements")
    url = databases.new_url()
    for option, cached in (("", True), ("?prepared_statement_cache_size=0", False)):
        async with points(url + option, size=1) as (pg, _engine):
            for _ in range(3):
                await pg.first(select(literal(1)), {})
            assert ((await pg.first(prepared, {}))[0] > 0) is cached
