"""clusterfed mounted into a host that is not the example server (SPEC 7), on SQLite and
PostgreSQL: the host has only its own users table (with its own column names) and
``mount``; clusterfed brings its tables through its own migration chain.

The issuer is a real cluster process. The host runs in process, twice over the same
database: the second instance is a restart, answered from L2 (the table) with
timestamps that must come back timezone-aware whatever the backend returns.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from clusterfed import (
    Identity,
    ModelUserTable,
    UserRecord,
    foreign_identity,
    mount,
    upgrade_database,
)
from clusterfed.server.testing import (
    MANAGEMENT_TOKEN,
    ClusterProcess,
    cluster_config,
    free_port,
    local_config,
    remote_entry,
    running,
)
from clusterfed.storage.db import create_engine
from clusterfed.storage.migrate import FEDERATION_VERSION_TABLE
from clusterfed.tokens import parse_token, salt
from fastapi import Depends, FastAPI
from sqlalchemy import String, inspect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tests.conftest import asgi_client
from tests.support.databases import DatabaseFactory, run_blocking

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server


class HostBase(DeclarativeBase):
    pass


class Account(HostBase):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(27), unique=True)
    email: Mapped[str | None] = mapped_column(String(255))
    handle: Mapped[str | None] = mapped_column(String(255), unique=True)
    first_name: Mapped[str | None] = mapped_column(String(255))
    last_name: Mapped[str | None] = mapped_column(String(255))
    admin: Mapped[bool] = mapped_column(default=False)
    is_active: Mapped[bool] = mapped_column(default=False)
    is_invited: Mapped[bool] = mapped_column(default=False)
    plan: Mapped[str] = mapped_column(String(16))  # a column of the host's only


ACCOUNTS = ModelUserTable(Account, defaults={"plan": "free"}, username="handle", is_admin="admin")


def host_app(config) -> FastAPI:  # type: ignore[no-untyped-def]
    app = FastAPI()
    mount(app, config, users=ACCOUNTS)

    @app.get("/whoami")
    async def whoami(identity: Identity | None = Depends(foreign_identity)) -> dict[str, str]:
        assert identity is not None
        return {"uuid": identity.user.uuid, "username": identity.user.username or ""}

    return app


async def create_host_tables(url: str) -> None:
    engine = create_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(HostBase.metadata.create_all)
    await engine.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_host_validates_mirrors_and_answers_from_l2_after_a_restart(
    databases: DatabaseFactory, workdir: Path
) -> None:
    url = databases.new_empty_url("host")
    await create_host_tables(url)
    run_blocking(upgrade_database, url)
    # qr1hi lists c97qk (the host, in process: never called), so copies salted for it count.
    remotes = {"c97qk": remote_entry(free_port())}
    home = ClusterProcess(
        cluster_config("qr1hi", databases.new_url("qr1hi"), remotes=remotes), workdir
    )
    with running(home) as qr1hi:
        _, token = await qr1hi.new_user(email="grace@qr1hi.example", username="grace")
        config = local_config(
            "c97qk", url, remotes={"qr1hi": remote_entry(qr1hi.port, ActivateUsers=True)}
        )
        salted = salt(parse_token(token), "c97qk").encode()

        first = host_app(config)
        async with asgi_client(first) as client:
            # Salted (as controllers send it), then raw (as the SDK does): L2 keeps the last.
            for presented in (salted, token):
                answer = await client.get("/whoami", headers=bearer(presented))
                assert answer.status_code == 200, answer.text
                assert answer.json()["username"] == "grace"
            status = await client.get("/_health/ping", headers=bearer(MANAGEMENT_TOKEN))
            assert status.json() == {"health": "OK"}
        mirrored = await _account(url)
        assert (mirrored.handle, mirrored.plan, mirrored.is_active) == ("grace", "free", True)

        restarted = host_app(config)
        async with asgi_client(restarted) as client:
            answer = await client.get("/whoami", headers=bearer(token))
            assert answer.status_code == 200, answer.text
            metrics = restarted.state.federation.metrics
            assert metrics.l2_hit._value.get() == 1
            listing = await client.get(
                "/federation/v1/token_cache", headers=bearer(MANAGEMENT_TOKEN)
            )
            (item,) = listing.json()["items"]
            assert item["state"] == "fresh" and item["cluster_id"] == "qr1hi"


async def _account(url: str) -> Account:
    from clusterfed.storage.db import create_sessionmaker
    from sqlalchemy import select

    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            account = await session.scalar(select(Account))
            assert account is not None
            return account
    finally:
        await engine.dispose()


async def test_clusterfed_tables_sit_beside_the_hosts_own_migrations(
    databases: DatabaseFactory,
) -> None:
    url = databases.new_empty_url("host")
    run_blocking(upgrade_database, url)
    run_blocking(upgrade_database, url)  # idempotent: a second upgrade finds it at head
    engine = create_engine(url)
    async with engine.connect() as connection:
        tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
    await engine.dispose()
    # Its own version table: the host's alembic_version stays the host's.
    assert tables == {
        "federation_token_cache",
        "federation_purges",
        "federation_token_validators",
        "federation_revocation_outbox",
        "federation_rate_buckets",
        FEDERATION_VERSION_TABLE,
    }


def test_model_user_table_refuses_a_model_it_cannot_map() -> None:
    with pytest.raises(TypeError, match="has no attribute username"):
        ModelUserTable(Account)
    with pytest.raises(TypeError, match="not UserRecord fields: nickname"):
        ModelUserTable(Account, nickname="handle")


async def test_two_hosts_seeing_one_user_first_at_once_make_one_row(
    databases: DatabaseFactory, workdir: Path
) -> None:
    """The race of concurrent first sight is clusterfed's work, not the host's."""
    import asyncio

    from clusterfed.identity import RemoteUser
    from clusterfed.storage.database import Database
    from clusterfed.storage.store import SqlFederationStore
    from clusterfed.trust.mirroring import MirrorPolicy

    url = databases.new_empty_url("host")
    await create_host_tables(url)
    stores = [SqlFederationStore(Database(url), ACCOUNTS) for _ in range(4)]
    for store in stores:
        await store.database.start()
    try:
        remote = RemoteUser(uuid="qr1hi-tpzed-000000000000abc", username="lin", is_active=True)
        policy = MirrorPolicy(login=False, trusted=True, autosetup=False)
        records = await asyncio.gather(*(s.mirror_user(remote, policy) for s in stores))
        assert {r.username for r in records} == {"lin"}
        assert all(isinstance(r, UserRecord) and r.is_active for r in records)
    finally:
        for store in stores:
            await store.database.dispose()


async def test_the_host_page_and_api_refuse_without_credentials(databases: DatabaseFactory) -> None:
    url = databases.new_empty_url("host")
    await create_host_tables(url)
    run_blocking(upgrade_database, url)
    app = host_app(local_config("c97qk", url))
    async with asgi_client(app) as client:
        assert (await client.get("/federation/v1/token_cache")).status_code == 401
        # A local token: this host gave no LocalCredentials, so only the ManagementToken.
        local = await client.get(
            "/federation/v1/token_cache", headers=bearer("v2/c97qk-gj3su-000000000000000/abc")
        )
        assert local.status_code == 401
        assert "ManagementToken" in local.json()["errors"][0]
