"""SPEC 3.4: a purge takes effect in every worker process within 2 s.

c97qk runs ``serve --workers 4``; its workers share nothing but the database. A token
is cached by the workers (many concurrent requests on fresh connections), revoked at
the issuer (from then on only a cache can accept it: RemoteTokenRefresh is 1 h), and
purged through one worker's API or through the CLI. Then requests keep coming, spread
over the workers, and the test measures how long some worker still answered 200.
Run with ``-s`` to see the measured delays.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from clusterfed.storage.models import FederationPurge
from clusterfed.tokens import parse_token
from sqlalchemy import select

from tests.support.databases import DatabaseFactory
from tests.support.federation_pair import (
    MANAGEMENT,
    USERS_CURRENT,
    Pair,
    federation_pair,
    revoke,
    run_cli,
)

# Starts other processes (clusterfed serve, the CLI, pip) or a browser: not in make test-fast.
pytestmark = pytest.mark.server

WORKERS = 4
BATCH = 8  # concurrent requests, so that every worker is kept busy accepting
BOUND = 2.0  # seconds, SPEC 3.4
CONSECUTIVE_401 = 50


@pytest.fixture(scope="module")
def pair(
    session_databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    workdir: Path = tmp_path_factory.mktemp("workers")
    with federation_pair(session_databases, workdir, workers=WORKERS, refresh="1h") as pair:
        yield pair


async def batch(client: httpx.AsyncClient, url: str, token: str) -> list[int]:
    headers = {"Authorization": f"Bearer {token}"}
    responses = await asyncio.gather(*(client.get(url, headers=headers) for _ in range(BATCH)))
    return [r.status_code for r in responses]


def fresh_connections() -> httpx.AsyncClient:
    # No keep-alive: each request is a new connection, accepted by whichever worker.
    return httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0), timeout=10)


async def cache_everywhere_then_revoke(pair: Pair, client: httpx.AsyncClient) -> str:
    _, token = await pair.qr1hi.new_user()
    url = f"{pair.c97qk.base_url}{USERS_CURRENT}"
    for _ in range(25):
        assert await batch(client, url, token) == [200] * BATCH
    await revoke(pair.qr1hi, token)
    # Revoked: for a while every worker keeps accepting it from its cache.
    for _ in range(10):
        assert await batch(client, url, token) == [200] * BATCH
    return token


async def measure(pair: Pair, client: httpx.AsyncClient, token: str, purged_at: float) -> float:
    """Seconds from ``purged_at`` to the last 200 of any worker (0 if none came)."""
    url = f"{pair.c97qk.base_url}{USERS_CURRENT}"
    last_200, run_of_401, ok_after = purged_at, 0, 0
    while run_of_401 < CONSECUTIVE_401:
        statuses = await batch(client, url, token)
        now = time.monotonic()
        assert set(statuses) <= {200, 401}, statuses
        assert now - purged_at < BOUND + 5, "workers kept accepting the purged token"
        for status in statuses:
            if status == 200:
                last_200, run_of_401, ok_after = now, 0, ok_after + 1
            else:
                run_of_401 += 1
    delay = last_200 - purged_at
    backend = "postgresql" if pair.c97qk.database_url.startswith("postgresql") else "sqlite"
    print(
        f"\n[{backend}] purge reached all {WORKERS} workers: last 200 {delay:.3f}s after the "
        f"purge ({ok_after} answers of 200 after it, then {CONSECUTIVE_401} consecutive 401s)"
    )
    return delay


async def test_api_purge_reaches_every_worker_within_2s(pair: Pair) -> None:
    async with fresh_connections() as client:
        token = await cache_everywhere_then_revoke(pair, client)
        purged_at = time.monotonic()
        response = await client.delete(
            f"{pair.c97qk.base_url}/federation/v1/token_cache/{parse_token(token).uuid}",
            headers=MANAGEMENT,
        )
        assert response.json() == {"purged": 1}
        assert await measure(pair, client, token, purged_at) < BOUND


async def test_cli_purge_reaches_every_worker_within_2s(pair: Pair) -> None:
    async with fresh_connections() as client:
        token = await cache_everywhere_then_revoke(pair, client)
        user = (
            await client.get(
                f"{pair.c97qk.base_url}{USERS_CURRENT}",
                headers={"Authorization": f"Bearer {token}"},
            )
        ).json()["uuid"]
        started, started_wall = time.monotonic(), time.time()
        done = await asyncio.to_thread(run_cli, pair.c97qk, "cache", "purge", "--user", user)
        print(f"\nthe CLI took {time.monotonic() - started:.3f}s")
        assert done.stdout.strip() == "purged 1 cached token", done.stderr
        last_200 = await measure(pair, client, token, started)
        # The 2 s run from the purge, as for the API's: from the moment the command wrote it
        # to the purge log, not from the start of its interpreter (0.54 s of the command's
        # 0.55 s pass before the write on a quiet machine, over a second on a loaded one).
        async with pair.c97qk.session() as session:
            written = await session.scalar(
                select(FederationPurge.created_at).where(
                    FederationPurge.kind == "user", FederationPurge.value == user
                )
            )
        assert written is not None
        written_after = written.timestamp() - started_wall
        print(f"the purge was written {written_after:.3f}s after the command started")
        assert 0 < written_after < time.monotonic() - started
        assert last_200 - written_after < BOUND
