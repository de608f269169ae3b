"""The revocation outbox and the receiver's purge under races, on SQLite and PostgreSQL.

"Workers" here are separate ``Database`` objects (their own engines and pools) over one
database, as ``serve --workers N`` has; the receiver is a real HTTP server on loopback.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from clusterfed.metrics import FederationMetrics
from clusterfed.outbound.remote import RemoteClient
from clusterfed.server.models import ApiClientAuthorization
from clusterfed.server.testing import ServerThread, local_config, remote_entry
from clusterfed.server.users.revocation_store import SqlRevocationStore
from clusterfed.server.users.service import create_user, users_table
from clusterfed.storage.database import Database
from clusterfed.storage.db import utcnow
from clusterfed.storage.models import FederationPurge, FederationTokenCache
from clusterfed.storage.revocation_models import (
    FederationRevocationNotice,
    FederationTokenValidator,
)
from clusterfed.storage.store import SqlFederationStore
from clusterfed.tokens import TOKEN_TYPE, new_secret, new_uuid, salted_secret
from clusterfed.trust.revocation import (
    FIRST_RETRY_SECONDS,
    MAX_RETRY_SECONDS,
    NOTICE_PATH,
    RevocationOutbox,
    retry_delay,
)
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.databases import DatabaseFactory


def test_retry_delay_first_within_a_second_then_at_most_30s() -> None:
    for _ in range(200):
        assert FIRST_RETRY_SECONDS / 2 <= retry_delay(1) <= FIRST_RETRY_SECONDS
        assert retry_delay(30) <= MAX_RETRY_SECONDS
    assert max(retry_delay(12) for _ in range(200)) > MAX_RETRY_SECONDS / 2


@pytest.fixture
async def workers(databases: DatabaseFactory) -> AsyncIterator[list[Database]]:
    url = databases.new_url("qr1hi")
    started = [Database(url) for _ in range(2)]
    for database in started:
        await database.start()
    yield started
    for database in started:
        await database.dispose()


async def _issued_token(
    database: Database, *, remotes: tuple[str, ...] = ("c97qk",), echo: bool = False
) -> str:
    """A qr1hi token with a pending notice for each of ``remotes``; returns its UUID."""
    async with database.sessionmaker() as session:
        user = await create_user(session, cluster_id="qr1hi", email="a@qr1hi.example")
        uuid = new_uuid("qr1hi", TOKEN_TYPE)
        session.add(ApiClientAuthorization(uuid=uuid, api_token=new_secret(), user_uuid=user.uuid))
        for remote in remotes:
            session.add(
                FederationRevocationNotice(
                    token_uuid=uuid, remote=remote, next_attempt_at=utcnow(), echo=echo
                )
            )
        await session.commit()
    return uuid


async def test_two_workers_claiming_at_once_get_each_notice_once(workers: list[Database]) -> None:
    await _issued_token(workers[0], remotes=("c97qk", "zbbbb", "zcccc"))
    stores = [SqlRevocationStore(database) for database in workers]
    now = utcnow()
    claims = await asyncio.gather(
        *(
            store.claim_notices(now=now, lease_until=now + timedelta(seconds=15))
            for store in stores * 5
        )
    )
    claimed = [notice.remote for batch in claims for notice in batch]
    assert sorted(claimed) == ["c97qk", "zbbbb", "zcccc"]
    # Held: nobody gets them again until the lease runs out.
    assert await stores[0].claim_notices(now=now, lease_until=now) == []
    later = now + timedelta(seconds=16)
    assert len(await stores[1].claim_notices(now=later, lease_until=later)) == 3


async def test_two_workers_applying_one_notice_purge_once(workers: list[Database]) -> None:
    uuid = new_uuid("qr1hi", TOKEN_TYPE)
    now = utcnow()
    async with workers[0].sessionmaker() as session:
        session.add(
            FederationTokenCache(
                token_uuid=uuid,
                user_uuid=new_uuid("qr1hi", "tpzed"),
                cluster_id="qr1hi",
                secret_digest="d" * 64,
                scopes=["all"],
                expires_at=None,
                refreshes_at=now + timedelta(seconds=300),
                validated_at=now,
                last_used_at=now,
            )
        )
        await session.commit()
    stores = [SqlFederationStore(database, users_table) for database in workers]
    assert not await stores[0].forget_token(uuid, digest="e" * 64)
    results = await asyncio.gather(
        *(store.forget_token(uuid, digest="d" * 64) for store in stores * 5)
    )
    assert sorted(results) == [False] * 9 + [True]
    async with workers[0].sessionmaker() as session:
        purges = await session.scalar(
            select(func.count()).select_from(FederationPurge).where(FederationPurge.value == uuid)
        )
    assert purges == 1


class Receiver:
    """A remote that fails ``failures`` times, then takes notices; it records each."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.received: list[tuple[float, dict[str, str]]] = []
        self.attempts: list[float] = []
        self.app = Starlette(routes=[Route(NOTICE_PATH, self._notice, methods=["POST"])])

    async def _notice(self, request: Request) -> JSONResponse:
        self.attempts.append(time.monotonic())
        if len(self.attempts) <= self.failures:
            return JSONResponse({"errors": ["not now"]}, status_code=500)
        self.received.append((time.monotonic(), await request.json()))
        return JSONResponse({"status": "received"}, status_code=202)


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[tuple[Receiver, int]]:
    stub = Receiver(failures=getattr(request, "param", 0))
    with ServerThread(stub.app) as server:
        yield stub, server.port


def _outbox(database: Database, port: int, metrics: FederationMetrics) -> RevocationOutbox:
    config = local_config("qr1hi", database.url, remotes={"c97qk": remote_entry(port)})
    return RevocationOutbox(
        SqlRevocationStore(database), RemoteClient(config), metrics, lease_seconds=15
    )


async def test_two_workers_racing_deliver_a_notice_once_with_the_right_proof(
    workers: list[Database], receiver: tuple[Receiver, int]
) -> None:
    stub, port = receiver
    uuid = await _issued_token(workers[0])
    metrics = FederationMetrics()
    outboxes = [_outbox(database, port, metrics) for database in workers]
    sent = await asyncio.gather(*(outbox.send_due() for outbox in outboxes * 3))
    assert sum(sent) == 1
    assert len(stub.received) == 1
    async with workers[0].sessionmaker() as session:
        secret = await session.scalar(
            select(ApiClientAuthorization.api_token).where(ApiClientAuthorization.uuid == uuid)
        )
        notice = await session.scalar(select(FederationRevocationNotice))
    assert stub.received[0][1] == {"token_uuid": uuid, "proof": salted_secret(secret, "c97qk")}
    assert notice is not None and notice.outcome == "delivered" and notice.attempts == 0
    assert await outboxes[0].send_due() == 0
    for outbox in outboxes:
        await outbox.remote.aclose()


@pytest.mark.parametrize("receiver", [3], indirect=True)
async def test_failed_deliveries_are_retried_first_within_a_second(
    workers: list[Database], receiver: tuple[Receiver, int]
) -> None:
    stub, port = receiver
    await _issued_token(workers[0])
    metrics = FederationMetrics()
    outbox = _outbox(workers[0], port, metrics)
    outbox.start()
    try:
        deadline = time.monotonic() + 10
        delivered = metrics.notices.labels("c97qk", "delivered")
        while not delivered._value.get():
            assert time.monotonic() < deadline, "never delivered"
            await asyncio.sleep(0.05)
    finally:
        await outbox.aclose()
        await outbox.remote.aclose()
    gaps = [later - earlier for earlier, later in itertools.pairwise(stub.attempts)]
    assert len(gaps) == 3 and gaps[0] < 1.0, gaps
    assert metrics.notices.labels("c97qk", "failed")._value.get() == 3
    assert metrics.notices.labels("c97qk", "delivered")._value.get() == 1


async def test_a_notice_past_the_tokens_expiry_is_given_up(
    workers: list[Database], receiver: tuple[Receiver, int]
) -> None:
    stub, port = receiver
    uuid = await _issued_token(workers[0])
    async with workers[0].sessionmaker() as session:
        notice = await session.scalar(select(FederationRevocationNotice))
        assert notice is not None
        notice.give_up_at = utcnow() - timedelta(seconds=1)
        await session.commit()
    outbox = _outbox(workers[0], port, FederationMetrics())
    assert await outbox.send_due() == 1
    await outbox.remote.aclose()
    assert stub.attempts == []
    async with workers[0].sessionmaker() as session:
        notice = await session.scalar(
            select(FederationRevocationNotice).where(FederationRevocationNotice.token_uuid == uuid)
        )
    assert notice is not None and notice.outcome == "expired" and notice.finished_at


async def test_prune_drops_old_finished_notices_and_validators_of_dead_tokens(
    workers: list[Database],
) -> None:
    live = await _issued_token(workers[0], remotes=("c97qk",))
    dead = await _issued_token(workers[0], remotes=("zbbbb",))
    long_ago = utcnow() - timedelta(days=8)
    async with workers[0].sessionmaker() as session:
        for uuid in (live, dead):
            session.add(FederationTokenValidator(token_uuid=uuid, cluster_id="c97qk"))
        gone = new_uuid("qr1hi", TOKEN_TYPE)  # a token that no longer exists
        session.add(FederationTokenValidator(token_uuid=gone, cluster_id="c97qk"))
        token = await session.scalar(
            select(ApiClientAuthorization).where(ApiClientAuthorization.uuid == dead)
        )
        assert token is not None
        token.expires_at = long_ago
        for notice in (await session.scalars(select(FederationRevocationNotice))).all():
            if notice.token_uuid == dead:
                notice.finished_at, notice.outcome = long_ago, "delivered"
        await session.commit()
    store = SqlRevocationStore(workers[1])
    assert await store.prune(before=utcnow() - timedelta(days=7)) == 3
    async with workers[0].sessionmaker() as session:
        left = (await session.scalars(select(FederationTokenValidator.token_uuid))).all()
        notices = (await session.scalars(select(FederationRevocationNotice.token_uuid))).all()
    assert left == [live] and notices == [live]


async def test_a_notice_to_a_remote_that_just_validated_is_sent_again_a_second_later(
    workers: list[Database], receiver: tuple[Receiver, int]
) -> None:
    stub, port = receiver
    uuid = await _issued_token(workers[0], echo=True)
    outbox = _outbox(workers[0], port, FederationMetrics())
    outbox.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            async with workers[0].sessionmaker() as session:
                notice = await session.scalar(select(FederationRevocationNotice))
            assert notice is not None
            if notice.outcome == "delivered":
                break
            assert time.monotonic() < deadline, "never finished"
            await asyncio.sleep(0.05)
    finally:
        await outbox.aclose()
        await outbox.remote.aclose()
    assert [body["token_uuid"] for _, body in stub.received] == [uuid, uuid]
    assert stub.received[1][0] - stub.received[0][0] >= 0.9
