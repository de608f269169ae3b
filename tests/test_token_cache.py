"""SPEC 4: the two-level token cache, single flight, negative cache, stale-if-error,
the circuit breaker, and upserts that survive concurrent writers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from clusterfed.identity import RemoteUser
from clusterfed.server.models import User
from clusterfed.server.testing import ServerThread
from clusterfed.server.users.service import users_table
from clusterfed.storage.database import Database
from clusterfed.storage.models import FederationTokenCache
from clusterfed.storage.store import SqlFederationStore
from clusterfed.tokens import new_secret, parse_token
from clusterfed.trust.mirroring import MirrorPolicy
from clusterfed.trust.store import CachedToken
from sqlalchemy import func, select

from tests.support.acceptor import c97qk, users_current
from tests.support.databases import DatabaseFactory
from tests.support.stub_issuer import TOKEN_PATH, USER_PATH, Answer, StubIssuer


@pytest.fixture
def issuer() -> Iterator[tuple[StubIssuer, ServerThread]]:
    stub = StubIssuer("qr1hi")
    with stub.serving() as server:
        yield stub, server


async def test_cold_storm_makes_one_validation(
    databases: DatabaseFactory, issuer: tuple[StubIssuer, ServerThread]
) -> None:
    stub, server = issuer
    token, user = stub.issue(is_active=True)
    async with c97qk(databases, server.port) as (client, _):
        responses = await asyncio.gather(*(users_current(client, token) for _ in range(500)))
    assert {r.status_code for r in responses} == {200}
    assert {r.json()["uuid"] for r in responses} == {user.uuid}
    assert stub.calls == {TOKEN_PATH: 1, USER_PATH: 1}


async def test_rejected_token_is_remembered_for_negative_ttl(
    databases: DatabaseFactory, issuer: tuple[StubIssuer, ServerThread]
) -> None:
    stub, server = issuer
    token = f"v2/{parse_token(stub.issue()[0]).uuid}/{new_secret()}"
    stub.tokens.clear()  # the issuer no longer knows it: 401
    # The flood takes 0.9-1.4 s in process on a quiet machine: the time to live outlasts it
    # with room, or the last of the flood would ask the issuer again on a slow one.
    async with c97qk(databases, server.port, NegativeCacheTTL="4s") as (client, _):
        responses = await asyncio.gather(*(users_current(client, token) for _ in range(500)))
        assert {r.status_code for r in responses} == {401}
        assert stub.calls[TOKEN_PATH] == 1
        await asyncio.sleep(4.1)
        assert (await users_current(client, token)).status_code == 401
        assert stub.calls[TOKEN_PATH] == 2


async def test_l2_answers_after_l1_is_dropped(
    databases: DatabaseFactory, issuer: tuple[StubIssuer, ServerThread]
) -> None:
    stub, server = issuer
    token, user = stub.issue(is_active=True)
    async with c97qk(databases, server.port) as (client, app):
        assert (await users_current(client, token)).status_code == 200
        app.state.federation.invalidate("all")
        response = await users_current(client, token)
        assert response.status_code == 200 and response.json()["uuid"] == user.uuid
        async with app.state.database.sessionmaker() as session:
            row = await session.get(FederationTokenCache, parse_token(token).uuid)
    assert stub.calls == {TOKEN_PATH: 1, USER_PATH: 1}
    assert row is not None and parse_token(token).secret not in row.secret_digest
    assert row.secret_digest != parse_token(token).secret and len(row.secret_digest) == 64


async def test_known_uuid_with_another_secret_is_never_served_from_cache(
    databases: DatabaseFactory, issuer: tuple[StubIssuer, ServerThread]
) -> None:
    stub, server = issuer
    token, _ = stub.issue(is_active=True)
    impostor = f"v2/{parse_token(token).uuid}/{new_secret()}"
    async with c97qk(databases, server.port) as (client, app):
        assert (await users_current(client, token)).status_code == 200
        stub.tokens.clear()  # from now on the issuer rejects both secrets
        assert (await users_current(client, impostor)).status_code == 401
        # A full purge also forgets the rejection, so this asks the issuer again rather
        # than being served from the L2 row that holds the real secret's digest.
        app.state.federation.invalidate("all")
        assert (await users_current(client, impostor)).status_code == 401
    assert stub.calls[TOKEN_PATH] == 3


async def test_stale_if_error_serves_cached_identity_while_issuer_is_down(
    databases: DatabaseFactory,
) -> None:
    stub = StubIssuer("qr1hi")
    server = ServerThread(stub.app).start()
    token, user = stub.issue(is_active=True)
    async with c97qk(databases, server.port, refresh="1s", StaleIfError="30s") as (
        client,
        _,
    ):
        assert (await users_current(client, token)).status_code == 200
        server.stop()
        await asyncio.sleep(1.1)  # past refreshes_at: a refresh is due, the issuer is down
        response = await users_current(client, token)
        assert response.status_code == 200 and response.json()["uuid"] == user.uuid


async def test_without_stale_if_error_an_unreachable_issuer_is_502(
    databases: DatabaseFactory,
) -> None:
    stub = StubIssuer("qr1hi")
    server = ServerThread(stub.app).start()
    token, _ = stub.issue(is_active=True)
    async with c97qk(databases, server.port, refresh="1s") as (client, _):
        assert (await users_current(client, token)).status_code == 200
        server.stop()
        await asyncio.sleep(1.1)
        assert (await users_current(client, token)).status_code == 502


async def test_circuit_opens_after_repeated_timeouts(
    databases: DatabaseFactory,
    issuer: tuple[StubIssuer, ServerThread],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stub, server = issuer
    stub.overrides[TOKEN_PATH] = Answer(hang=5)
    async with c97qk(databases, server.port, RemoteTimeout="200ms") as (client, app):
        for _ in range(5):  # FAILURE_THRESHOLD timeouts, each a new token
            assert (await users_current(client, stub.issue()[0])).status_code == 504
        calls_before = stub.calls[TOKEN_PATH]
        # No call goes out, so the refusal spends nothing of the cold-validation budget
        # (nor waits for the shared one's round trip).
        throttle = app.state.federation.validator.throttle
        spent: list[str] = []
        monkeypatch.setattr(throttle, "acquire", lambda *args: spent.append("!"))
        started = time.monotonic()
        response = await users_current(client, stub.issue()[0])
        elapsed = time.monotonic() - started
        status = app.state.federation.remote_status()[0]
    assert response.status_code == 502 and "circuit open" in response.json()["errors"][0]
    assert spent == []
    assert elapsed < 0.2  # under one RemoteTimeout: nothing waited on the hanging issuer
    assert stub.calls[TOKEN_PATH] == calls_before
    assert (status.circuit_state, status.reachable) == ("open", False)


async def test_concurrent_upserts_leave_one_row(databases: DatabaseFactory) -> None:
    url = databases.new_url("race")
    stores = [SqlFederationStore(Database(url), users_table) for _ in range(2)]
    for store in stores:
        await store.database.start()
    try:
        now = datetime.now(UTC)
        entries = [
            CachedToken(
                token_uuid="qr1hi-gj3su-racingracing123",
                user_uuid="qr1hi-tpzed-racingracing123",
                cluster_id="qr1hi",
                secret_digest=f"{i:064x}",
                scopes=("all",),
                expires_at=None,
                refreshes_at=now + timedelta(minutes=5),
                validated_at=now,
                last_used_at=now,
            )
            for i in range(40)
        ]
        remote = RemoteUser(
            uuid="qr1hi-tpzed-racingracing123", email="race@qr1hi.example", is_active=True
        )
        policy = MirrorPolicy(login=False, trusted=True, autosetup=False)
        await asyncio.gather(
            *(stores[i % 2].save_token(entry) for i, entry in enumerate(entries)),
            *(stores[i % 2].mirror_user(remote, policy) for i in range(20)),
        )
        async with stores[0].database.sessionmaker() as session:
            rows = await session.scalar(select(func.count()).select_from(FederationTokenCache))
            users = await session.scalar(
                select(func.count()).select_from(User).where(User.uuid == remote.uuid)
            )
    finally:
        for store in stores:
            await store.database.dispose()
    assert (rows, users) == (1, 1)


async def test_touches_are_written_together(databases: DatabaseFactory) -> None:
    """last_used_at of many rows in one call (the validator batches a second's touches)."""
    store = SqlFederationStore(Database(databases.new_url("touch")), users_table)
    await store.database.start()
    try:
        then = datetime(2026, 1, 1, tzinfo=UTC)
        uuids = [f"qr1hi-gj3su-touchtouch{n:05d}" for n in range(3)]
        for uuid in uuids:
            await store.save_token(
                CachedToken(
                    token_uuid=uuid,
                    user_uuid="qr1hi-tpzed-touchtouch00000",
                    cluster_id="qr1hi",
                    secret_digest="0" * 64,
                    scopes=("all",),
                    expires_at=None,
                    refreshes_at=then + timedelta(minutes=5),
                    validated_at=then,
                    last_used_at=then,
                )
            )
        later = then + timedelta(minutes=3)
        await store.touch_tokens(
            {uuids[0]: later, uuids[2]: later, "qr1hi-gj3su-notcachedatall": later}
        )
        used = [(await store.load_token(uuid)).last_used_at for uuid in uuids]  # type: ignore[union-attr]
        assert used == [later, then, later]
    finally:
        await store.database.dispose()
